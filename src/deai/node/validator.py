"""The validator role: the round state machine of a job.

Everything the validator does with a job comes from the job's spec: the model, the
strategy (aggregation rule, server step, DP), the codec it decodes, the validation policy,
and whether it settles on chain. A job it cannot honour (settlement without a chain,
validation data that does not match the spec's digest, a spec it cannot build) is refused
with a reason in :attr:`Validator.refusals`.

Per round: open (the coordinator, ``spec.validators[0]``, sends train tasks), collect and
check every update (or the secure sum), close at completion or the deadline, hand the
round's inputs to the strategy, settle, move on. Every member of the committee does this
independently, so their model hashes can be compared at settlement.

Coordinator failover: every member knows the successor order (the spec's validator
order). If a round has seen no update ``k * takeover_s`` after it opened, member ``k``
(its position after the current driver) sends the round's train tasks itself and drives
the job from then on, delivering the result too. Honest members hold the same model, so
a task sent twice is the same task, and a provider trains a round once (the first task
from any member of the job's committee).

A member that restarts mid-job resumes after the last round it closed; it cannot know
whether the providers sent it their updates of the round it resumes at before it came
back. If that round closes incomplete, the member *abstains* from it and from every later
round of the job (``RoundOutcome.abstain``): it never commits a result built from inputs
it did not see (only committed members are slashable), stops driving, and does not
deliver a result. A sole validator never abstains: its result is the committee's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from deai.aggregation.base import Aggregator
from deai.compression.base import Codec
from deai.compression.downstream import Broadcaster
from deai.errors import ConfigError, DeaiError, InvalidMessage, InvalidUpdate
from deai.job.spec import JobSpec, UpdatePolicy, derive_seed
from deai.learning.data import Dataset
from deai.learning.params import FlatModel, vector_bytes, vector_from_bytes, vector_hash
from deai.learning.train import TrainRequest, train_local
from deai.node.base import (
    NodeContext,
    Role,
    build_codec_for,
    model_for,
    open_spec,
    param_policy,
    provider_set,
)
from deai.node.dp import DPStrategy, dp_norm_bound
from deai.node.hooks import (
    NullObserver,
    Rejection,
    RoundObserver,
    RoundOutcome,
    Settlement,
    lean,
)
from deai.node.messages import FinalModel, JobResult, OpenJob, TrainTask, Update
from deai.node.strategy import SecureSum, ServerStrategy, Strategy, Updates
from deai.node.validation import RejectReason, check_vector, check_vectors, decode_unchecked

if TYPE_CHECKING:
    from deai.aggregation.sentinel import BackdoorSentinel

DataSource = Callable[[JobSpec], Dataset]  # the requester's validation data for a job
SettlementFactory = Callable[[JobSpec, FlatModel, Dataset, NodeContext], Settlement | None]
# a restarted validator's journal: (last round closed, the model after it), or None
ResumeFn = Callable[[JobSpec], tuple[int, Tensor] | None]


class JobPending(DeaiError):
    """The node is still fetching what the job needs (its data, its chain job); the
    runtime hands the ``OpenJob`` to the validator again when it is there."""


@dataclass(frozen=True)
class JobRefusal:
    job_id: str
    reason: str


@dataclass
class RoundState:
    round: int
    participants: tuple[str, ...]
    started_s: float
    # sender -> (Δ, count), in arrival order; values are checked at close, all at once
    updates: dict[str, tuple[Tensor, int]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)  # participants whose update failed
    closed: bool = False
    members: frozenset[str] = frozenset()  # the participants, for O(1) membership

    def __post_init__(self) -> None:
        self.members = frozenset(self.participants)

    def complete(self) -> bool:
        # updates and rejected hold only participants, never the same one twice
        return len(self.updates) + len(self.rejected) >= len(self.members)


@dataclass
class ValidatorJob:
    spec: JobSpec
    model: FlatModel
    params: Tensor
    strategy: Strategy
    decoder: Codec
    validation: Dataset
    settlement: Settlement | None
    round: RoundState | None = None
    finals: dict[str, tuple[Tensor, int]] = field(default_factory=dict)
    done: bool = False
    early: dict[str, Update] = field(default_factory=dict)  # next round's updates, held
    early_sums: dict[int, SecureSum] = field(default_factory=dict)
    stopped: str | None = None  # why the job ended early, if it did
    driver: int = 0  # index in spec.validators of the member driving the rounds
    heard: set[int] = field(default_factory=set)  # rounds with at least one update seen
    broadcast: Broadcaster | None = None  # downstream compression (first coordinator only;
    # a member taking a round over sends whole models)
    holders: set[str] = field(default_factory=set)  # providers proven to hold x_hat
    broadcast_round: int = 0  # the round x_hat was last sent in (0: the initial model)
    resumed_round: int = 0  # the round a restart resumed at (0: never restarted)
    abstain: bool = False  # missed inputs after a restart: settle and drive no more
    codecs: dict[str, Codec] = field(default_factory=dict)  # wire spec -> the decoder

    def __post_init__(self) -> None:
        self.codecs = {self.decoder.spec.to_wire(): self.decoder}

    @property
    def secure(self) -> bool:
        p = self.spec.privacy
        return p is not None and p.secure_aggregation


def downstream_seed(spec: JobSpec) -> int:
    """The coordinator's codec randomness for broadcast deltas (public, as a provider's)."""
    return derive_seed(spec.seed, "downstream", "codec") % 2**31


def sentinel_for(
    spec: JobSpec, aggregator: Aggregator, model: FlatModel, validation: Dataset
) -> BackdoorSentinel | None:
    """The default rule's backdoor sentinel for this job (``sentinel``: None runs it where
    it can, True requires it, False turns it off), or None. Refuses the job, with the
    reason, when the spec requires it and it cannot run."""
    from deai.aggregation.sentinel import BackdoorSentinel, SentinelConfig, applicable, requested

    asked = requested(aggregator)
    if asked is False:
        return None
    why = applicable(model, validation)
    if why is None and spec.privacy is not None:
        why = "the job is differentially private (its DP strategy has no sentinel step)"
    if why is None and spec.algorithm.gossip:
        why = "the job is decentralised (gossip has no server step)"
    if why is not None:
        if asked:
            raise ConfigError(f"job {spec.job_id}: the backdoor sentinel cannot run: {why}")
        return None
    seed = derive_seed(spec.seed, spec.job_id, "sentinel") % 2**31
    return BackdoorSentinel(model, validation, SentinelConfig(), seed)


def build_strategy(
    spec: JobSpec,
    aggregator: Aggregator,
    reference: Callable[[int, Tensor], Tensor | None],
    sentinel: BackdoorSentinel | None = None,
) -> Strategy:
    """The job's strategy, from the spec alone: the registered rule and server step (and
    the default rule's backdoor sentinel), wrapped in DP when the spec asks for privacy."""
    inner = ServerStrategy(
        spec, aggregator, reference if spec.aggregation.rule == "fltrust" else None, sentinel
    )
    return DPStrategy(spec, inner) if spec.privacy is not None else inner


class Validator(Role):
    """Checks every update, runs the job's strategy, settles the round, drives the next."""

    def __init__(
        self,
        node_id: str,
        data: DataSource,
        *,
        settlement: SettlementFactory | None = None,
        observer: RoundObserver | None = None,
        resume: ResumeFn | None = None,
        keep_updates: bool = False,
    ) -> None:
        """``keep_updates``: keep each round's accepted updates and its parameters before
        and after in :attr:`outcomes` after the round (research: the privacy attacks read
        what the validator saw). Off, the settlement and the observer still get them
        during the round and memory does not grow with the rounds (an update stack is
        providers x parameters x 4 bytes, each parameter vector parameters x 4)."""
        super().__init__(node_id)
        self.data = data
        self.keep_updates = keep_updates
        self.resume = resume
        self.settlement_for = settlement
        self.observer = observer or NullObserver()
        self.jobs: dict[str, ValidatorJob] = {}
        # jobs whose OpenJob arrived before this node could take them (JobPending: the
        # chain job or the validation data still being looked up): the spec, and the
        # first update each of its providers sent meanwhile (a task from a faster member
        # can overtake this node's preparation; dropping it closed the round incomplete)
        self.pending: dict[str, tuple[JobSpec, dict[str, Update]]] = {}
        self.rejections: list[Rejection] = []
        self.refusals: list[JobRefusal] = []
        self.outcomes: list[RoundOutcome] = []

    # ------------------------------------------------------------------ opening a job
    def on_open_job(self, sender: str, msg: OpenJob) -> None:
        spec = open_spec(msg)
        if self.node_id not in spec.validators or sender != spec.requester:
            return
        if spec.job_id in self.jobs:
            return  # a re-delivered OpenJob changes nothing
        try:
            job = self._build(spec)
        except JobPending:
            self.pending.setdefault(spec.job_id, (spec, {}))
            return
        except DeaiError as e:
            self.pending.pop(spec.job_id, None)
            self.refusals.append(JobRefusal(spec.job_id, str(e)))
            return
        self.jobs[spec.job_id] = job
        self._start(job, spec)
        _, held = self.pending.pop(spec.job_id, (spec, {}))
        for provider, update in held.items():  # in arrival order, as if they came now
            self.on_update(provider, update)

    def _start(self, job: ValidatorJob, spec: JobSpec) -> None:
        resumed = self.resume(spec) if self.resume is not None else None
        if resumed is not None and not spec.algorithm.gossip:
            done, params = resumed  # a restart: go on after the last round it closed
            job.params = params
            job.resumed_round = done + 1
            if done >= spec.rounds:
                self._deliver(job)
            else:
                self._open_round(job, done + 1)
            return
        if spec.algorithm.gossip:
            wait = spec.round_timeout_s * (spec.rounds + 1)
            self.ctx.call_later(wait, lambda: self._finish_gossip(spec.job_id))
        else:
            self._open_round(job, 1)

    def _build(self, spec: JobSpec) -> ValidatorJob:
        from deai.registry import aggregators

        validation = self.data(spec)
        want = spec.data_schema.validation
        if want is not None and validation.digest() != want:
            raise ConfigError(
                f"job {spec.job_id}: this node's validation data does not match the spec's "
                f"digest {want[:12]}...: refusing the job"
            )
        if (spec.aggregation.rule == "fltrust" or spec.settlement is not None) and len(
            validation
        ) == 0:
            raise ConfigError(
                f"job {spec.job_id}: needs the requester's validation data, which is empty"
            )
        model = model_for(spec)
        aggregator = aggregators.build(spec.aggregation.rule, spec.aggregation.params)
        holder: list[ValidatorJob] = []
        strategy = build_strategy(
            spec,
            aggregator,
            lambda r, params: self._reference(holder[0], r, params),
            sentinel_for(spec, aggregator, model, validation),
        )
        settlement = None
        if spec.settlement is not None:
            if self.settlement_for is None:
                raise ConfigError(
                    f"job {spec.job_id} is settled on chain and this node has no chain: "
                    "refusing the job"
                )
            settlement = self.settlement_for(spec, model, validation, self.ctx)
            if settlement is None:
                raise ConfigError(f"job {spec.job_id}: cannot settle it on this node's chain")
        job = ValidatorJob(
            spec,
            model,
            model.initial_vector(),
            strategy,
            build_codec_for(spec, 0),
            validation,
            settlement,
        )
        if spec.codec.downstream and spec.codec.name != "identity" and self.coordinator(job):
            job.broadcast = Broadcaster(build_codec_for(spec, downstream_seed(spec)), job.params)
            job.holders = set(spec.providers)  # x_hat starts as the public initial model
        holder.append(job)
        return job

    def coordinator(self, job: ValidatorJob) -> bool:
        return job.spec.validators[job.driver] == self.node_id

    def takeover_s(self, job: ValidatorJob) -> float:
        """How long a round may stay silent before the next member takes it over."""
        return job.spec.round_timeout_s / (2 * len(job.spec.validators))

    def _send_tasks(self, job: ValidatorJob, st: RoundState) -> None:
        for p, task in self._tasks(job, st.round, st.participants).items():
            self.ctx.send(p, task)

    def _watch(self, job: ValidatorJob, st: RoundState) -> None:
        """Failover: take the round over if it stays silent past this member's turn."""
        spec = job.spec
        me = spec.validators.index(self.node_id)
        n = len(spec.validators)
        k = (me - job.driver) % n  # this member's place after the driver
        if k == 0 or job.secure or job.abstain:  # SecAgg's server is fixed: validators[0];
            return  # a member that abstains holds a model it cannot vouch for

        ref = weakref.ref(st)  # a pending timer must not keep a closed round's updates

        def check() -> None:
            st = ref()
            if st is not None and job.round is st and not st.closed and st.round not in job.heard:
                job.driver = me
                self._send_tasks(job, st)

        self.ctx.call_later(k * self.takeover_s(job), check)

    # ---------------------------------------------------------------------- rounds
    def _open_round(self, job: ValidatorJob, round_: int) -> None:
        spec = job.spec
        reason = job.strategy.stop_reason(round_)
        if reason is not None:
            job.stopped = reason
            self._deliver(job)
            return
        st = RoundState(round_, job.strategy.configure_train(round_), self.ctx.now())
        job.round = st
        if self.coordinator(job):
            self._send_tasks(job, st)
        else:
            self._watch(job, st)

        ref = weakref.ref(st)  # the timer outlives the round: it must not hold its updates

        def deadline() -> None:
            st = ref()
            if st is not None and job.round is st and not st.closed:
                self._close_round(job)

        self.ctx.call_later(spec.round_timeout_s, deadline)
        held = [(s, m) for s, m in job.early.items() if m.round == round_]
        job.early = {s: m for s, m in job.early.items() if m.round > round_}
        for sender, msg in held:
            self._take_update(job, sender, msg)
        if round_ in job.early_sums:
            s = job.early_sums.pop(round_)
            self._close_round(job, s)

    def _tasks(
        self, job: ValidatorJob, round_: int, participants: tuple[str, ...]
    ) -> dict[str, TrainTask]:
        """The round's train tasks: the whole model, or (downstream compression) the
        encoded delta from the last broadcast to providers proven to hold it."""
        jid, b = job.spec.job_id, job.broadcast
        if b is None:
            full = TrainTask(jid, round_, vector_bytes(job.params), vector_hash(job.params))
            return dict.fromkeys(participants, full)
        base = job.broadcast_round
        enc = b.advance(job.params)
        job.broadcast_round = round_
        h = vector_hash(b.model)
        full = TrainTask(jid, round_, vector_bytes(b.model), h)
        if enc is None:
            return dict.fromkeys(participants, full)
        delta = TrainTask(jid, round_, enc.payload, h, b.wire, base)
        return {p: delta if p in job.holders else full for p in participants}

    def _reject(self, st: RoundState | None, round_: int, sender: str, e: Exception) -> None:
        reason = e.reason if isinstance(e, InvalidUpdate) else str(RejectReason.MALFORMED)
        rej = Rejection(round_, sender, reason, str(e))
        if st is not None:
            st.rejections.append(rej)
        self.rejections.append(rej)
        self.observer.on_rejection(self.node_id, rej)

    def on_update(self, sender: str, msg: Update) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None:
            pending = self.pending.get(msg.job_id)
            if pending is not None and sender in provider_set(pending[0]):
                pending[1].setdefault(sender, msg)  # one per provider: bounded by the spec
            return
        if job.done or job.round is None:
            return
        st = job.round
        is_provider = sender in provider_set(job.spec)
        if is_provider:
            job.heard.add(msg.round)  # someone drives this round
        if msg.round == st.round + 1 and not st.closed and is_provider:
            # the next round's update overtook this round's last ones (links are FIFO per
            # sender, not across senders): hold it, first one per sender, until we get there
            job.early.setdefault(sender, msg)
            return
        self._take_update(job, sender, msg)

    def _policy(self, job: ValidatorJob, st: RoundState) -> UpdatePolicy:
        if job.spec.privacy is None:
            return job.spec.policy
        bound = dp_norm_bound(job.spec, len(st.participants), job.model.dim)
        return UpdatePolicy(
            max_norm=min(job.spec.policy.max_norm, bound), max_examples=job.spec.policy.max_examples
        )

    def _take_update(self, job: ValidatorJob, sender: str, msg: Update) -> None:
        st = job.round
        assert st is not None
        try:
            if job.secure:
                raise InvalidUpdate(
                    str(RejectReason.PLAINTEXT_IN_SECURE_JOB),
                    "the job uses secure aggregation: a plaintext update is refused unread",
                )
            if sender not in st.members:  # the drawn are a subset of the spec's providers
                raise InvalidUpdate(str(RejectReason.UNEXPECTED_SENDER), f"{sender} not drawn")
            if sender in st.updates or sender in st.rejected:
                raise InvalidUpdate(str(RejectReason.DUPLICATE), "second update this round")
            if st.closed or msg.round != st.round:
                raise InvalidUpdate(
                    str(RejectReason.WRONG_ROUND), f"round {msg.round}, open round {st.round}"
                )
            delta = decode_unchecked(  # its values: in _inputs, with the round's others
                msg,
                round_=st.round,
                dim=job.model.dim,
                policy=self._policy(job, st),
                codecs=job.codecs,
            )
        except (InvalidUpdate, InvalidMessage) as e:
            self._reject(st, msg.round, sender, e)
            if (
                sender in st.members
                and msg.round == st.round
                and not st.closed
                and sender not in st.updates  # a duplicate of a taken update: counted once
            ):
                st.rejected.add(sender)
                if st.complete():
                    self._close_round(job)
            return
        st.updates[sender] = (delta, msg.num_examples)
        if st.complete():
            self._close_round(job)

    def accept_sum(
        self, job_id: str, round_: int, total: Tensor, contributors: tuple[str, ...]
    ) -> None:
        """Close a secure-aggregation round with the unmasked sum of ``contributors``."""
        job = self.jobs.get(job_id)
        if job is None or job.done or job.round is None or not job.secure:
            return
        st = job.round
        s = SecureSum(tuple(contributors), total)
        if st.round == round_ and not st.closed:
            self._close_round(job, s)
        elif round_ == st.round + 1:
            job.early_sums[round_] = s  # this member has not closed the last round yet

    def _inputs(self, job: ValidatorJob, st: RoundState) -> Updates | SecureSum:
        if job.secure:
            return SecureSum((), torch.zeros(job.model.dim))
        arrived = list(st.updates)  # arrival order
        if not arrived:
            return Updates((), torch.zeros((0, job.model.dim)), ())
        # stacked in draw order, the order the strategy takes them in (one [n, d] copy)
        senders = tuple(s for s in st.participants if s in st.updates)
        stack = torch.stack([st.updates[s][0] for s in senders])
        # every update's values checked as one tensor operation (exactly check_vector's
        # verdict per row); the failing are rejected as they would have been on arrival,
        # in arrival order
        verdicts = dict(zip(senders, check_vectors(stack, self._policy(job, st)), strict=True))
        for sender in arrived:
            bad = verdicts[sender]
            if bad is not None:
                del st.updates[sender]
                st.rejected.add(sender)
                self._reject(st, st.round, sender, bad)
                strike = getattr(self.ctx, "strike", None)  # deployed: an offence, as on
                if strike is not None:  # arrival (the batched check runs at close)
                    strike(sender, f"{bad.reason}: {bad}")
        if len(st.updates) < len(senders):
            keep = [i for i, s in enumerate(senders) if s in st.updates]
            senders = tuple(senders[i] for i in keep)
            stack = stack[torch.tensor(keep, dtype=torch.long)]
        return Updates(senders, stack, tuple(st.updates[s][1] for s in senders))

    def _close_round(self, job: ValidatorJob, secure_sum: SecureSum | None = None) -> None:
        st = job.round
        assert st is not None and not st.closed
        st.closed = True
        spec = job.spec
        start = job.params
        inputs: Updates | SecureSum = (
            secure_sum if secure_sum is not None else self._inputs(job, st)
        )
        result = job.strategy.aggregate_train(st.round, start, inputs)
        if job.broadcast is not None:  # who answered this round holds this round's x_hat
            job.holders = set(st.updates) | st.rejected
            if secure_sum is not None:
                job.holders |= set(secure_sum.contributors)
        job.params = result.params
        plain = isinstance(inputs, Updates)
        if st.round == job.resumed_round and not st.complete() and len(spec.validators) > 1:
            self._abstain(job)
        outcome = RoundOutcome(
            job_id=spec.job_id,
            round=st.round,
            validator=self.node_id,
            params=job.params.clone(),
            model_hash=vector_hash(job.params),
            participants=st.participants,
            accepted=result.accepted,
            excluded=result.excluded,
            rejections=tuple(st.rejections),
            missing=tuple(
                p
                for p in st.participants
                if p not in st.updates and p not in st.rejected and p not in result.accepted
            ),
            weights=result.weights,
            updates=_rows(inputs, result.accepted) if plain else None,
            started_s=st.started_s,
            closed_s=self.ctx.now(),
            start_params=start.clone(),
            applied=result.applied,
            note=result.note,
            privacy=result.privacy,
            secure=not plain,
            abstain=job.abstain,
        )
        if job.settlement is not None:
            job.settlement.settle(outcome)
        self.observer.on_round(outcome)
        self.outcomes.append(outcome if self.keep_updates else lean(outcome))
        if st.round < spec.rounds:
            self._open_round(job, st.round + 1)
        else:
            self._deliver(job)

    def _reference(self, job: ValidatorJob, round_: int, params: Tensor) -> Tensor:
        """The validator's own update on the requester's validation data (FLTrust's root
        update): the same local training as a provider's."""
        seed = derive_seed(job.spec.seed, job.spec.job_id, "reference", round_)
        req = TrainRequest(
            params, job.validation.x, job.validation.y, job.spec.algorithm.local(), seed
        )
        return train_local(job.model, [req])[0].params - params

    def abstain(self, job_id: str) -> None:
        """Settlement found this member's model is not the committee's (a round it closed
        incomplete settled with another model): abstain from the rest of the job."""
        job = self.jobs.get(job_id)
        if job is not None and not job.abstain:
            self._abstain(job)

    def _abstain(self, job: ValidatorJob) -> None:
        """This member's model may differ from the committee's from now on (it missed a
        round's inputs): it commits nothing more and hands driving on."""
        job.abstain = True
        if self.coordinator(job):
            job.driver = (job.driver + 1) % len(job.spec.validators)

    def _deliver(self, job: ValidatorJob) -> None:
        job.done = True
        if self.coordinator(job) and not job.abstain:
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
            if sender not in job.spec.providers:
                raise InvalidUpdate(str(RejectReason.UNEXPECTED_SENDER), f"{sender}")
            if sender in job.finals:
                raise InvalidUpdate(str(RejectReason.DUPLICATE), "second final model")
            theta = check_vector(
                vector_from_bytes(msg.params, job.model.dim), param_policy(job.spec)
            )
        except (InvalidUpdate, InvalidMessage) as e:
            self._reject(None, msg.round, sender, e)
            return
        job.finals[sender] = (theta, msg.num_examples)
        if len(job.finals) == len(job.spec.providers):
            self._finish_gossip(msg.job_id)

    def _finish_gossip(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job.done:
            return
        if job.finals:
            order = [p for p in job.spec.providers if p in job.finals]
            job.params = torch.stack([job.finals[p][0] for p in order]).mean(dim=0)
        self._deliver(job)


def _rows(inputs: Updates | SecureSum, accepted: tuple[str, ...]) -> Tensor | None:
    if not isinstance(inputs, Updates) or not accepted:
        return None
    if accepted == inputs.senders:  # every input accepted, in order: the stack itself
        return inputs.stack
    index = {s: i for i, s in enumerate(inputs.senders)}
    return inputs.stack[[index[s] for s in accepted]]
