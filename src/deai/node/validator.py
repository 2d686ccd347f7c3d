"""The validator role: checks every update, aggregates robustly, accounts privacy,
settles the round and drives the next one."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from deai.aggregation.base import Aggregator, RoundContext, weighted_mean
from deai.compression.base import Codec, IdentityCodec
from deai.errors import InvalidMessage, InvalidUpdate
from deai.learning.algorithms import Weighting
from deai.learning.data import Dataset
from deai.learning.params import FlatModel, vector_bytes, vector_from_bytes, vector_hash
from deai.learning.train import TrainRequest, train_local
from deai.node.base import Role, model_for, open_spec, param_policy, participants
from deai.node.hooks import (
    NoSettlement,
    NullObserver,
    Rejection,
    RoundObserver,
    RoundOutcome,
    Settlement,
)
from deai.node.job import JobSpec, derive_seed
from deai.node.messages import (
    FinalModel,
    JobResult,
    OpenJob,
    TrainTask,
    Update,
)
from deai.node.validation import RejectReason, check_vector, decode_update
from deai.privacy.accounting import AccountantKind, PrivacyAccountant, PrivacyBudget
from deai.privacy.dp_fedavg import clip_update


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
        spec = open_spec(msg)
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
        elif spec.privacy is not None and len(senders) < spec.privacy.min_survivors:
            # too few noise shares arrived to keep the promised noise: no update, no charge
            senders = ()
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
        m = len(participants(spec, 1))  # the drawn count is the same every round
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
                vector_from_bytes(msg.params, job.model.dim), param_policy(job.spec)
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
