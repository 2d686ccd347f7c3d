"""The provider role: trains on its own private data, then sends an update (server
algorithms) or gossips with its neighbours (D-PSGD)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from deai.compression.base import Codec, IdentityCodec
from deai.compression.downstream import apply_delta
from deai.compression.error_feedback import ErrorFeedback
from deai.errors import CodecError, InvalidMessage, InvalidUpdate
from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.learning.params import (
    FlatModel,
    bytes_hash,
    vector_bytes,
    vector_from_bytes,
    vector_hash,
)
from deai.learning.train import TrainRequest, TrainResult
from deai.node.base import (
    Encoder,
    Role,
    build_codec_for,
    codec_seed,
    gossip_weights,
    model_for,
    open_spec,
    param_policy,
    participants,
    provider_set,
    secret_seed,
    train_seed,
)
from deai.node.dp import privatize
from deai.node.hooks import (
    Behaviour,
    Honest,
    NullObserver,
    Rejection,
    RoundObserver,
    SecureUploader,
)
from deai.node.messages import (
    FinalModel,
    GossipModel,
    OpenJob,
    TrainTask,
    Update,
)
from deai.node.validation import RejectReason, check_vector


@dataclass
class _GossipState:
    round: int = 0
    params: Tensor | None = None
    delta: Tensor | None = None
    inbox: dict[int, dict[int, Tensor]] = field(default_factory=dict)  # round -> sender idx -> θ
    deadline_passed: bool = False


@dataclass(frozen=True)
class ProviderRefusal:
    """A job, or one round of it, that this provider would not take part in, and why."""

    job_id: str
    round: int  # 0: the whole job
    reason: str


# the last whole task model decoded: (its bytes object, the vector)
_LAST_MODEL: list[tuple[bytes, Tensor]] = []


def _decoded_model(data: bytes, dim: int) -> Tensor:
    """``vector_from_bytes(data, dim)``, shared by every provider handed the same bytes
    object: in a simulation one task object goes to all of a round's providers, and
    decoding it for each was a copy of the model per provider. Sharing is safe because no
    role writes into a global model: training stacks it (a copy), the delta and a
    downstream delta are computed out of place. A deployed node decodes its own body."""
    if _LAST_MODEL:
        blob, vector = _LAST_MODEL[0]
        if blob is data and vector.shape == (dim,):
            return vector
    vector = vector_from_bytes(data, dim)
    _LAST_MODEL[:] = [(data, vector)]
    return vector


def encoder_for(spec: JobSpec, provider: str) -> Encoder:
    """The job's codec for one provider, with error feedback if the spec asks for it."""
    codec = build_codec_for(spec, codec_seed(spec, provider))
    if spec.codec.error_feedback and spec.codec.name != "identity":
        return ErrorFeedback(codec)
    return codec


class Provider(Role):
    """Trains on its own private data; sends updates (server algorithms) or gossips."""

    def __init__(
        self,
        node_id: str,
        data: Dataset,
        *,
        behaviour: Behaviour | None = None,
        observer: RoundObserver | None = None,
    ) -> None:
        super().__init__(node_id)
        self.data = data
        self.behaviour = behaviour or Honest()
        self.x, self.y = self.behaviour.local_data(data.x, data.y)
        self.observer = observer or NullObserver()
        self.uploader: SecureUploader | None = None  # set when secure aggregation is on
        self.jobs: dict[str, tuple[JobSpec, str, FlatModel]] = {}
        self.encoders: dict[str, Encoder] = {}  # job id -> its codec (stateful: error feedback)
        self.wires: dict[str, str] = {}  # job id -> its codec spec as the Update names it
        self.decoders: dict[str, Codec] = {}  # job id -> the codec of broadcast deltas
        self.held: dict[str, tuple[Tensor, int]] = {}  # job id -> last global model, round
        self.gossip: dict[str, _GossipState] = {}
        self.tasked: dict[str, int] = {}  # job id -> highest round a task was taken for
        self.rejections: list[Rejection] = []
        self.refusals: list[ProviderRefusal] = []

    @property
    def num_examples(self) -> int:
        return int(self.y.shape[0])

    def on_open_job(self, sender: str, msg: OpenJob) -> None:
        spec = open_spec(msg)
        if sender != spec.requester or self.node_id not in provider_set(spec):
            return
        if spec.job_id in self.jobs:
            return
        reason = self._cannot_honour(spec)
        if reason is not None:
            self.refusals.append(ProviderRefusal(spec.job_id, 0, reason))
            return
        model = model_for(spec)
        self.jobs[spec.job_id] = (spec, msg.spec_hash, model)
        self.encoders[spec.job_id] = encoder_for(spec, self.node_id)
        self.decoders[spec.job_id] = build_codec_for(spec, 0)  # decoding needs no seed
        self.wires[spec.job_id] = self.decoders[spec.job_id].spec.to_wire()
        init = model.initial_vector()  # public: the first broadcast base of every party
        self.held[spec.job_id] = (init, 0)
        if spec.algorithm.gossip:
            self.gossip[spec.job_id] = _GossipState(params=model.initial_vector())
            self._start_gossip_round(spec.job_id, 1)

    def _cannot_honour(self, spec: JobSpec) -> str | None:
        schema = spec.data_schema
        if tuple(schema.input_shape) != tuple(self.data.input_shape):
            return (
                f"the job's data has shape {tuple(schema.input_shape)}; this provider's data "
                f"has {tuple(self.data.input_shape)}"
            )
        if schema.num_classes != self.data.num_classes:
            return (
                f"the job has {schema.num_classes} classes; this provider's data has "
                f"{self.data.num_classes}"
            )
        if spec.privacy is not None and spec.privacy.secure_aggregation and self.uploader is None:
            return (
                "the job uses secure aggregation and this node has no SecAgg client "
                "installed: refusing rather than sending plaintext updates"
            )
        return None

    def _request(self, spec: JobSpec, params: Tensor, round_: int) -> TrainRequest:
        seed = train_seed(spec, self.node_id, round_)
        return TrainRequest(params, self.x, self.y, spec.algorithm.local(), seed)

    # server algorithms ------------------------------------------------------------
    def on_train_task(self, sender: str, msg: TrainTask) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or sender not in job[0].validators:
            return  # tasks come from the job's committee (any member may drive a round)
        if msg.round <= self.tasked.get(msg.job_id, 0):
            return  # this round (or a later one) is already trained: a task sent twice
        spec, _, model = job
        params = self._global_model(spec, model.dim, msg)
        if params is None:
            return
        self.tasked[msg.job_id] = msg.round

        def done(result: TrainResult) -> None:
            delta = self.behaviour.update(result.params - params, msg.round)
            if spec.privacy is not None:
                delta = self._privatize(spec, msg.round, delta)
                if spec.privacy.secure_aggregation:
                    if self.uploader is None:  # fail closed: never send it in the clear
                        self.refusals.append(
                            ProviderRefusal(
                                spec.job_id,
                                msg.round,
                                "secure aggregation required and no SecAgg client: update not sent",
                            )
                        )
                        return
                    self.uploader.submit(spec.job_id, msg.round, delta, self.num_examples)
                    return
            jid = msg.job_id  # the job's id: the job was looked up by it
            try:
                enc = self.encoders[jid].encode(delta)
            except CodecError:  # e.g. non-finite values: send raw, validators will judge
                enc = IdentityCodec().encode(delta)
            update = Update(
                jid,
                msg.round,
                self.wires[jid] if enc.codec == self.decoders[jid].name else enc.codec,
                enc.dim,
                "float32",
                enc.payload,
                self.behaviour.claim(self.num_examples),
            )
            ctx = self.ctx
            for v in spec.validators:
                ctx.send(v, update)

        self.ctx.train(model, self._request(spec, params, msg.round), done)

    def _global_model(self, spec: JobSpec, dim: int, msg: TrainTask) -> Tensor | None:
        """The task's model: sent whole, or an encoded delta on the last one this provider
        holds (downstream compression). A delta it cannot apply is refused for the round
        (the coordinator then sends the whole model next time it draws this provider)."""
        if msg.base_round < 0:
            if msg.codec != "identity":
                raise InvalidMessage(f"{self.node_id}: a whole model must be raw float32")
            params = _decoded_model(msg.model, dim)
            digest = bytes_hash(msg.model)  # the bytes are params' canonical bytes
        else:
            held, held_round = self.held[spec.job_id]
            codec = self.decoders[spec.job_id]
            reason = None
            if msg.base_round != held_round:
                reason = "broadcast delta on a model this provider does not hold"
            elif msg.codec != self.wires[spec.job_id]:
                reason = f"broadcast codec {msg.codec[:60]!r} is not the job's"
            else:
                try:
                    params = apply_delta(codec, held, msg.model)
                except CodecError as e:
                    reason = f"malformed broadcast delta: {e}"
            if reason is not None:
                self.refusals.append(ProviderRefusal(spec.job_id, msg.round, reason))
                return None
            digest = vector_hash(params)
        if digest != msg.model_hash:
            raise InvalidMessage(f"{self.node_id}: global model does not match its hash")
        self.held[spec.job_id] = (params, msg.round)
        return params

    def _privatize(self, spec: JobSpec, round_: int, delta: Tensor) -> Tensor:
        """Clip to the sensitivity and add this provider's share of the noise, drawn from
        the node's secret randomness (never from the spec: the validator knows the spec)."""
        gen = torch.Generator().manual_seed(
            secret_seed(self.ctx, f"dp-noise/{spec.job_id}/{round_}")
        )
        return privatize(spec, delta, len(participants(spec, round_)), gen)

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
            theta = check_vector(vector_from_bytes(msg.params, model.dim), param_policy(spec))
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
