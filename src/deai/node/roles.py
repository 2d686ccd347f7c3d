"""Node roles as message handlers.

A role reacts to messages and timers through a :class:`NodeContext`; it never loops over
other nodes or calls them directly. The same role objects run in the simulation
(in-memory transport, virtual clock, batched training) and in a deployed node (HTTP,
wall clock, one training request at a time): only the context differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from deai.aggregation.base import Aggregator, RoundContext, weighted_mean
from deai.compression.base import Codec, Encoded, IdentityCodec
from deai.errors import CodecError, InvalidMessage, InvalidUpdate
from deai.learning.algorithms import Weighting
from deai.learning.data import Dataset
from deai.learning.models import build_model
from deai.learning.params import FlatModel, vector_bytes, vector_from_bytes, vector_hash
from deai.learning.topology import edges, neighbours
from deai.learning.train import TrainRequest, TrainResult, train_local
from deai.node.hooks import (
    Behaviour,
    Honest,
    NoSettlement,
    NullObserver,
    Rejection,
    RoundObserver,
    RoundOutcome,
    SecureUploader,
    Settlement,
)
from deai.node.job import JobSpec, UpdatePolicy, derive_seed
from deai.node.messages import (
    FinalModel,
    GossipModel,
    JobResult,
    Message,
    OpenJob,
    TrainTask,
    Update,
)
from deai.node.validation import RejectReason, check_vector, decode_update
from deai.privacy.accounting import AccountantKind, PrivacyAccountant, PrivacyBudget
from deai.privacy.dp_fedavg import clip_update, gaussian_noise


class NodeContext(Protocol):
    """What a role may do: the runtime's side of the contract."""

    node_id: str

    def now(self) -> float: ...

    def send(self, to: str, msg: Message) -> None: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None: ...

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None: ...


class Encoder(Protocol):
    """What a provider encodes its update with: a codec, or a codec with error feedback."""

    def encode(self, vector: Tensor) -> Encoded: ...


class Role:
    """Base: dispatches each message type to ``on_<kind>`` if the role defines it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._ctx: NodeContext | None = None

    @property
    def ctx(self) -> NodeContext:
        if self._ctx is None:
            raise RuntimeError(f"role on {self.node_id} is not attached to a runtime")
        return self._ctx

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    def start(self) -> None:
        """Called once when the runtime starts."""

    def handle(self, sender: str, msg: Message) -> None:
        handler = getattr(self, f"on_{msg.kind}", None)
        if handler is not None:
            handler(sender, msg)


def model_for(spec: JobSpec) -> FlatModel:
    """Every party builds the same initial model from the spec's seed."""
    return FlatModel(build_model(spec.model, spec.input_shape, spec.num_classes, spec.seed))


def participants(spec: JobSpec, round_: int) -> tuple[str, ...]:
    """Providers drawn for a round: all, or a seeded sample anyone can recompute."""
    p = spec.algorithm.participation
    if p >= 1.0:
        return spec.providers
    k = max(1, math.ceil(p * len(spec.providers)))
    rng = np.random.default_rng(derive_seed(spec.seed, spec.job_id, "participants", round_))
    pick = sorted(rng.choice(len(spec.providers), size=k, replace=False).tolist())
    return tuple(spec.providers[i] for i in pick)


@lru_cache(maxsize=256)
def _gossip_graph(spec_hash: str, topology: str, n: int, round_: int, seed: int) -> list[list[int]]:
    from deai.learning.topology import TopologyName

    return neighbours(edges(TopologyName(topology), n, round_, seed), n)


def gossip_weights(spec: JobSpec, spec_hash: str, j: int, round_: int) -> dict[int, float]:
    """Row ``j`` of the Metropolis–Hastings matrix for ``round_`` (self weight included)."""
    nb = _gossip_graph(spec_hash, spec.algorithm.topology, len(spec.providers), round_, spec.seed)
    row = {k: 1.0 / (1.0 + max(len(nb[j]), len(nb[k]))) for k in nb[j]}
    row[j] = 1.0 - sum(row.values())
    return row


def _open(msg: OpenJob) -> JobSpec:
    spec = JobSpec.from_json(msg.spec_json)
    if spec.spec_hash() != msg.spec_hash or spec.job_id != msg.job_id:
        raise InvalidMessage("job spec does not match its hash or job id")
    return spec


# --------------------------------------------------------------------------- requester


class Requester(Role):
    """Opens a job and receives the trained model."""

    def __init__(self, node_id: str, spec: JobSpec) -> None:
        super().__init__(node_id)
        self.spec = spec
        self.result: Tensor | None = None
        self.result_hash: str | None = None

    def start(self) -> None:
        msg = OpenJob(self.spec.job_id, self.spec.to_json(), self.spec.spec_hash())
        for node in dict.fromkeys(self.spec.validators + self.spec.providers):
            self.ctx.send(node, msg)

    def on_job_result(self, sender: str, msg: JobResult) -> None:
        if sender not in self.spec.validators or msg.job_id != self.spec.job_id:
            return
        params = vector_from_bytes(msg.model, model_for(self.spec).dim)
        if vector_hash(params) != msg.model_hash:
            return  # a corrupted or forged result is ignored; another validator may send one
        self.result, self.result_hash = params, msg.model_hash


# --------------------------------------------------------------------------- provider


@dataclass
class _GossipState:
    round: int = 0
    params: Tensor | None = None
    delta: Tensor | None = None
    inbox: dict[int, dict[int, Tensor]] = field(default_factory=dict)  # round -> sender idx -> θ
    deadline_passed: bool = False


class Provider(Role):
    """Trains on its own private data; sends updates (server algorithms) or gossips."""

    def __init__(
        self,
        node_id: str,
        data: Dataset,
        *,
        codec: Encoder | None = None,
        behaviour: Behaviour | None = None,
        observer: RoundObserver | None = None,
    ) -> None:
        super().__init__(node_id)
        self.behaviour = behaviour or Honest()
        self.x, self.y = self.behaviour.local_data(data.x, data.y)
        self.codec = codec or IdentityCodec()
        self.observer = observer or NullObserver()
        self.uploader: SecureUploader | None = None  # set when secure aggregation is on
        self.jobs: dict[str, tuple[JobSpec, str, FlatModel]] = {}
        self.gossip: dict[str, _GossipState] = {}
        self.rejections: list[Rejection] = []

    @property
    def num_examples(self) -> int:
        return int(self.y.shape[0])

    def on_open_job(self, sender: str, msg: OpenJob) -> None:
        spec = _open(msg)
        if self.node_id not in spec.providers or sender != spec.requester:
            return
        model = model_for(spec)
        self.jobs[spec.job_id] = (spec, msg.spec_hash, model)
        if spec.algorithm.gossip:
            self.gossip[spec.job_id] = _GossipState(params=model.initial_vector())
            self._start_gossip_round(spec.job_id, 1)

    def _request(self, spec: JobSpec, params: Tensor, round_: int) -> TrainRequest:
        seed = derive_seed(spec.seed, spec.job_id, self.node_id, round_)
        return TrainRequest(params, self.x, self.y, spec.algorithm.local, seed)

    # server algorithms ------------------------------------------------------------
    def on_train_task(self, sender: str, msg: TrainTask) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or sender != job[0].validators[0]:
            return
        spec, _, model = job
        params = vector_from_bytes(msg.model, model.dim)
        if vector_hash(params) != msg.model_hash:
            raise InvalidMessage(f"{self.node_id}: global model does not match its hash")

        def done(result: TrainResult) -> None:
            delta = self.behaviour.update(result.params - params, msg.round)
            if spec.privacy is not None:
                delta = self._privatize(spec, msg.round, delta)
                if spec.privacy.secure_aggregation and self.uploader is not None:
                    self.uploader.submit(spec.job_id, msg.round, delta, self.num_examples)
                    return
            try:
                enc = self.codec.encode(delta)
            except CodecError:  # e.g. non-finite values: send raw, validators will judge
                enc = IdentityCodec().encode(delta)
            update = Update(
                spec.job_id,
                msg.round,
                enc.codec,
                enc.dim,
                "float32",
                enc.payload,
                self.behaviour.claim(self.num_examples),
            )
            for v in spec.validators:
                self.ctx.send(v, update)

        self.ctx.train(model, self._request(spec, params, msg.round), done)

    def _privatize(self, spec: JobSpec, round_: int, delta: Tensor) -> Tensor:
        """Clip to the sensitivity and add this provider's share of the noise."""
        p = spec.privacy
        assert p is not None
        delta = clip_update(delta, p.clip).vector
        if p.noise_multiplier > 0:
            m = len(participants(spec, round_))
            # in simulation the noise seed is derived; a deployed node draws it from the OS
            gen = torch.Generator().manual_seed(
                derive_seed(spec.seed, spec.job_id, self.node_id, round_, "dp-noise")
            )
            std = p.noise_multiplier * p.clip / math.sqrt(m)
            delta = delta + gaussian_noise(delta.shape[0], std, gen)
        return delta

    # D-PSGD -----------------------------------------------------------------------
    def _start_gossip_round(self, job_id: str, round_: int) -> None:
        spec, spec_hash, model = self.jobs[job_id]
        st = self.gossip[job_id]
        assert st.params is not None
        st.round, st.delta, st.deadline_passed = round_, None, False
        j = spec.providers.index(self.node_id)
        blob = vector_bytes(st.params)
        for k in gossip_weights(spec, spec_hash, j, round_):
            if k != j:
                self.ctx.send(spec.providers[k], GossipModel(job_id, round_, blob))

        def done(result: TrainResult) -> None:
            assert st.params is not None
            st.delta = self.behaviour.update(result.params - st.params, round_)
            self._try_mix(job_id)

        def deadline() -> None:
            if st.round == round_:
                st.deadline_passed = True
                self._try_mix(job_id)

        self.ctx.train(model, self._request(spec, st.params, round_), done)
        self.ctx.call_later(spec.round_timeout_s, deadline)

    def on_gossip_model(self, sender: str, msg: GossipModel) -> None:
        job = self.jobs.get(msg.job_id)
        st = self.gossip.get(msg.job_id)
        if job is None or st is None or sender not in job[0].providers:
            return
        spec, _, model = job
        try:
            if msg.round < st.round:
                raise InvalidUpdate(
                    str(RejectReason.WRONG_ROUND), f"round {msg.round} < {st.round}"
                )
            theta = check_vector(vector_from_bytes(msg.params, model.dim), _param_policy(spec))
        except (InvalidUpdate, InvalidMessage) as e:
            reason = e.reason if isinstance(e, InvalidUpdate) else str(RejectReason.MALFORMED)
            rej = Rejection(msg.round, sender, reason, str(e))
            self.rejections.append(rej)
            self.observer.on_rejection(self.node_id, rej)
            return
        st.inbox.setdefault(msg.round, {})[spec.providers.index(sender)] = theta
        self._try_mix(msg.job_id)

    def _try_mix(self, job_id: str) -> None:
        spec, spec_hash, _ = self.jobs[job_id]
        st = self.gossip[job_id]
        if st.delta is None or st.params is None:
            return
        j = spec.providers.index(self.node_id)
        row = gossip_weights(spec, spec_hash, j, st.round)
        got = st.inbox.get(st.round, {})
        if not st.deadline_passed and any(k not in got for k in row if k != j):
            return
        # missing neighbours' weight stays with this node, so the row still sums to 1
        mixed = st.params * (row[j] + sum(w for k, w in row.items() if k != j and k not in got))
        for k, w in row.items():
            if k != j and k in got:
                mixed = mixed + w * got[k]
        st.params = mixed + st.delta
        st.inbox.pop(st.round, None)
        self.observer.on_gossip(self.node_id, st.round, st.params, self.ctx.now())
        if st.round < spec.rounds:
            self._start_gossip_round(job_id, st.round + 1)
        else:
            st.round = spec.rounds + 1
            final = FinalModel(job_id, spec.rounds, vector_bytes(st.params), self.num_examples)
            for v in spec.validators:
                self.ctx.send(v, final)


def _param_policy(spec: JobSpec) -> UpdatePolicy:
    # parameters (not updates) are bounded far more loosely than updates
    return UpdatePolicy(max_norm=spec.policy.max_norm * 1e3, max_examples=spec.policy.max_examples)


# --------------------------------------------------------------------------- validator


@dataclass
class _RoundState:
    round: int
    participants: tuple[str, ...]
    started_s: float
    updates: dict[str, tuple[Tensor, int]] = field(default_factory=dict)  # sender -> (Δ, count)
    rejections: list[Rejection] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)  # participants whose update failed
    closed: bool = False

    def complete(self) -> bool:
        return all(p in self.updates or p in self.rejected for p in self.participants)


@dataclass
class _ValidatorJob:
    spec: JobSpec
    model: FlatModel
    params: Tensor
    round: _RoundState | None = None
    finals: dict[str, tuple[Tensor, int]] = field(default_factory=dict)
    done: bool = False
    early: dict[str, tuple[str, Update]] = field(default_factory=dict)  # next round's, held
    accountant: PrivacyAccountant | None = None  # DP jobs
    stopped: str | None = None  # why the job ended early, if it did


class Validator(Role):
    """Checks every update, aggregates robustly, settles the round, drives the next one.

    The first validator of a job's committee coordinates (sends the train tasks and the
    result); every member validates and aggregates independently, so their model hashes
    can be compared at settlement.
    """

    def __init__(
        self,
        node_id: str,
        validation: Dataset,
        *,
        aggregator: Aggregator = weighted_mean,
        codecs: Mapping[str, Codec] | None = None,
        settlement: Settlement | None = None,
        observer: RoundObserver | None = None,
        server_step: Callable[[Tensor, Tensor, float], Tensor] | None = None,
        root_data: Dataset | None = None,
    ) -> None:
        super().__init__(node_id)
        self.validation = validation
        self.aggregator = aggregator
        self.codecs = dict(codecs) if codecs else {IdentityCodec.name: IdentityCodec()}
        self.settlement = settlement or NoSettlement()
        self.observer = observer or NullObserver()
        self.server_step = server_step or (lambda theta, agg, lr: theta + lr * agg)
        self.root_data = root_data  # a small trusted dataset (FLTrust's reference update)
        self.jobs: dict[str, _ValidatorJob] = {}
        self.rejections: list[Rejection] = []
        self.outcomes: list[RoundOutcome] = []

    def on_open_job(self, sender: str, msg: OpenJob) -> None:
        spec = _open(msg)
        if self.node_id not in spec.validators or sender != spec.requester:
            return
        model = model_for(spec)
        job = _ValidatorJob(spec, model, model.initial_vector())
        self.jobs[spec.job_id] = job
        if spec.algorithm.gossip:
            wait = spec.round_timeout_s * (spec.rounds + 1)
            self.ctx.call_later(wait, lambda: self._finish_gossip(spec.job_id))
        else:
            self._open_round(job, 1)

    def _coordinator(self, job: _ValidatorJob) -> bool:
        return job.spec.validators[0] == self.node_id

    def _open_round(self, job: _ValidatorJob, round_: int) -> None:
        spec = job.spec
        if not self._budget_allows_next_round(job):
            self._deliver(job)
            return
        st = _RoundState(round_, participants(spec, round_), self.ctx.now())
        job.round = st
        if self._coordinator(job):
            task = TrainTask(spec.job_id, round_, vector_bytes(job.params), vector_hash(job.params))
            for p in st.participants:
                self.ctx.send(p, task)

        def deadline() -> None:
            if job.round is st and not st.closed:
                self._close_round(job)

        self.ctx.call_later(spec.round_timeout_s, deadline)
        early = [m for m in job.early.values() if m[1].round == round_]
        job.early = {}
        for sender, msg in early:
            self.on_update(sender, msg)

    def _reject(self, st_list: list[Rejection], round_: int, sender: str, e: Exception) -> None:
        reason = e.reason if isinstance(e, InvalidUpdate) else str(RejectReason.MALFORMED)
        rej = Rejection(round_, sender, reason, str(e))
        st_list.append(rej)
        self.rejections.append(rej)
        self.observer.on_rejection(self.node_id, rej)

    def on_update(self, sender: str, msg: Update) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.done:
            return
        st = job.round
        if st is None:
            return
        if msg.round == st.round + 1 and not st.closed and sender in job.spec.providers:
            # the next round's update overtook this round's last ones (links are FIFO per
            # sender, not across senders): hold it, first one per sender, until we get there
            job.early.setdefault(sender, (sender, msg))
            return
        if not self._coordinator(job) and msg.round == st.round + 1 and st.closed:
            self._open_round(job, msg.round)  # followers open rounds as updates arrive
            st = job.round
            assert st is not None
        try:
            if sender not in job.spec.providers or sender not in st.participants:
                raise InvalidUpdate(str(RejectReason.UNEXPECTED_SENDER), f"{sender} not drawn")
            if sender in st.updates or sender in st.rejected:
                raise InvalidUpdate(str(RejectReason.DUPLICATE), "second update this round")
            if st.closed or msg.round != st.round:
                raise InvalidUpdate(
                    str(RejectReason.WRONG_ROUND), f"round {msg.round}, open round {st.round}"
                )
            delta = decode_update(
                msg,
                round_=st.round,
                dim=job.model.dim,
                policy=job.spec.policy,
                codecs=self.codecs,
            )
        except (InvalidUpdate, InvalidMessage) as e:
            self._reject(st.rejections, msg.round, sender, e)
            if sender in st.participants and msg.round == st.round and not st.closed:
                st.rejected.add(sender)
                if st.complete():
                    self._close_round(job)
            return
        st.updates[sender] = (delta, msg.num_examples)
        if st.complete():
            self._close_round(job)

    def _close_round(
        self, job: _ValidatorJob, secure_sum: tuple[Tensor, tuple[str, ...]] | None = None
    ) -> None:
        st = job.round
        assert st is not None and not st.closed
        st.closed = True
        spec = job.spec
        start_params = job.params.clone()
        senders = tuple(s for s in st.participants if s in st.updates)
        excluded: tuple[str, ...] = ()
        stack: Tensor | None = None
        weights: tuple[float, ...] = ()
        if secure_sum is not None:  # only the sum of the survivors' updates is known
            total, senders = secure_sum
            if senders:
                job.params = self.server_step(
                    job.params, total / len(st.participants), spec.algorithm.server_lr
                )
        elif senders:
            stack = torch.stack([st.updates[s][0] for s in senders])
            w = torch.tensor(
                [
                    float(min(st.updates[s][1], spec.policy.max_examples))
                    if spec.algorithm.weighting is Weighting.EXAMPLES
                    else 1.0
                    for s in senders
                ]
            )
            if spec.privacy is not None:
                # DP-FedAvg: clipped updates (providers clipped and noised them; clipping
                # again bounds a dishonest one), fixed denominator: the drawn count
                clipped = torch.stack([clip_update(u, spec.privacy.clip).vector for u in stack])
                agg_vector = clipped.sum(dim=0) / len(st.participants)
            else:
                ctx = RoundContext(senders=senders, round=st.round, reference=self._reference(job))
                agg = self.aggregator(stack, w, ctx)
                agg_vector = agg.vector
                excluded = tuple(senders[i] for i in agg.excluded)
            job.params = self.server_step(job.params, agg_vector, spec.algorithm.server_lr)
            weights = tuple(w.tolist())
        epsilon = self._account(job, len(senders))
        outcome = RoundOutcome(
            job_id=spec.job_id,
            round=st.round,
            validator=self.node_id,
            params=job.params.clone(),
            model_hash=vector_hash(job.params),
            participants=st.participants,
            accepted=senders,
            excluded=excluded,
            rejections=tuple(st.rejections),
            missing=tuple(
                p
                for p in st.participants
                if p not in st.updates and p not in st.rejected and p not in senders
            ),
            weights=weights,
            updates=stack,
            started_s=st.started_s,
            closed_s=self.ctx.now(),
            epsilon=epsilon,
            start_params=start_params,
        )
        self.outcomes.append(outcome)
        self.settlement.settle(outcome)
        self.observer.on_round(outcome)
        if st.round < spec.rounds:
            if self._coordinator(job):
                self._open_round(job, st.round + 1)
        else:
            self._deliver(job)

    def accept_sum(
        self, job_id: str, round_: int, total: Tensor, contributors: tuple[str, ...]
    ) -> None:
        """Close a secure-aggregation round with the unmasked sum of ``contributors``."""
        job = self.jobs.get(job_id)
        if (
            job is not None
            and not job.done
            and job.round is not None
            and job.round.closed
            and not self._coordinator(job)
            and round_ == job.round.round + 1
        ):
            self._open_round(job, round_)  # followers open rounds as relayed sums arrive
        if job is None or job.round is None or job.round.round != round_ or job.round.closed:
            return
        self._close_round(job, secure_sum=(total, contributors))

    # differential privacy ----------------------------------------------------------
    def _effective_noise(self, spec: JobSpec, arrived: int) -> float:
        """Noise multiplier the sum actually carries when ``arrived`` of the ``m`` drawn
        providers each added their ``1/m`` share of the variance."""
        p = spec.privacy
        assert p is not None
        m = len(participants(spec, 1)) if spec.algorithm.participation < 1 else len(spec.providers)
        return p.noise_multiplier * math.sqrt(max(arrived, 1) / m)

    def _sample_rate(self, spec: JobSpec) -> float:
        return len(participants(spec, 1)) / len(spec.providers)

    def _budget_allows_next_round(self, job: _ValidatorJob) -> bool:
        p = job.spec.privacy
        if p is None or p.epsilon is None or p.noise_multiplier <= 0:
            return p is None or p.epsilon is None
        if job.accountant is None:
            job.accountant = PrivacyAccountant(AccountantKind.RDP)
        worst = self._effective_noise(job.spec, p.min_survivors)  # fewest allowed arrivals
        budget = PrivacyBudget(p.epsilon, p.delta)
        if job.accountant.would_exceed(budget, worst, self._sample_rate(job.spec)):
            spent = job.accountant.epsilon(p.delta)
            job.stopped = (
                f"privacy budget: round {job.round.round + 1 if job.round else 1} could raise "
                f"epsilon above {p.epsilon} (spent {spent:.3f} at delta={p.delta}); "
                "training stopped and the current model was delivered"
            )
            return False
        return True

    def _account(self, job: _ValidatorJob, arrived: int) -> float | None:
        p = job.spec.privacy
        if p is None or p.noise_multiplier <= 0:
            return None
        if job.accountant is None:
            job.accountant = PrivacyAccountant(AccountantKind.RDP)
        if arrived > 0:
            job.accountant.step(
                self._effective_noise(job.spec, arrived), self._sample_rate(job.spec)
            )
        return job.accountant.epsilon(p.delta) if job.accountant.history else 0.0

    def _reference(self, job: _ValidatorJob) -> Tensor | None:
        """The validator's own update on its root data (the same local training)."""
        if self.root_data is None:
            return None
        st = job.round
        assert st is not None
        seed = derive_seed(job.spec.seed, job.spec.job_id, self.node_id, st.round)
        req = TrainRequest(
            job.params, self.root_data.x, self.root_data.y, job.spec.algorithm.local, seed
        )
        return train_local(job.model, [req])[0].params - job.params

    def _deliver(self, job: _ValidatorJob) -> None:
        job.done = True
        if self._coordinator(job):
            spec = job.spec
            self.ctx.send(
                spec.requester,
                JobResult(
                    spec.job_id, spec.rounds, vector_bytes(job.params), vector_hash(job.params)
                ),
            )

    # D-PSGD: the validator only receives the final models and averages them --------
    def on_final_model(self, sender: str, msg: FinalModel) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.done or not job.spec.algorithm.gossip:
            return
        try:
            if sender not in job.spec.providers or sender in job.finals:
                raise InvalidUpdate(str(RejectReason.UNEXPECTED_SENDER), f"{sender}")
            theta = check_vector(
                vector_from_bytes(msg.params, job.model.dim), _param_policy(job.spec)
            )
        except (InvalidUpdate, InvalidMessage) as e:
            self._reject(self.rejections, msg.round, sender, e)
            return
        job.finals[sender] = (theta, msg.num_examples)
        if len(job.finals) == len(job.spec.providers):
            self._finish_gossip(msg.job_id)

    def _finish_gossip(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job.done:
            return
        if job.finals:
            stack = torch.stack([t for t, _ in job.finals.values()])
            job.params = stack.mean(dim=0)
        self._deliver(job)
