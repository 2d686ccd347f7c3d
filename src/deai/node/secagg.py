"""Secure aggregation on the transport: the SecAgg state machines as node roles.

Bonawitz et al. (CCS 2017) run as messages between providers and the coordinating
validator, so the same code runs in simulation (in-memory transport, virtual clock) and
deployed (HTTP). Every stage message is a :class:`SecAggMessage` whose ``payload`` is the
schema'd ``to_bytes()`` of a ``deai.privacy.secagg.messages`` dataclass; the payload's own
kind byte says which stage it belongs to, so the two can never disagree.

Per round (clients are the round's drawn providers, numbered by their position in
``participants(spec, round)``; ``t = max(2, privacy.min_survivors, holders // 2 + 1)``):

0. a provider finishes training, clips and noises its update (``Provider._privatize``) and
   hands it to its :class:`SecAggClientRole` (the provider's ``SecureUploader``), which
   advertises two public keys, signed with its node identity key; the coordinator checks
   the signatures and answers with rosters of signed keys;
1. clients check every signature in their roster (one bad one: abort) and send encrypted
   Shamir shares; the coordinator relays them as bundles;
2. clients send masked inputs; the coordinator announces the survivor set U3;
3. survivors sign U3 (the consistency round); the coordinator relays the signatures;
4. a client that sees ``t`` valid signatures of its share holders on the U3 it signed
   sends the shares needed to unmask; the coordinator removes the masks and calls
   ``Validator.accept_sum`` with the exact sum of the survivors' updates.

Deadlines: stage ``s`` closes at the latest at ``started + f_s * round_timeout_s``
(:class:`StageDeadlines`, every ``f_s < 1``), and earlier as soon as every client still in
the protocol has answered. A client that misses a stage is a drop-out. Up to ``n - t``
drop-outs, at any stages, are recovered exactly; more abort the round cleanly: the
coordinator records a :class:`SecAggAbort` with the reason and closes the round with no
contributors (no update, no privacy charged) so the job moves on. The validator's own round
deadline still applies, so nothing waits forever.

Threat model: a malicious coordinator colluding with ``c < 2t - holders`` clients (see
``deai.privacy.secagg.protocol``): it cannot substitute keys, cannot show two survivor sets
to different clients, and learns only the sum of one agreed set of at least ``t`` signers.
A client aborts (:class:`SecAggRefusal`, with the reason) on any sign of tampering. A
peer's malformed, unsigned or impersonating message is rejected and recorded against that
peer, who is then treated as dropped. Not covered: a client can put any vector in
``[-range, range]^d`` into the sum (the validator cannot re-clip what it cannot see; use
group-wise secagg for robustness), and a coordinator can drop honest clients (it then gets
an abort or a smaller sum, never an individual input).

Other validators of the committee do not run the protocol: the coordinator relays the
unmasked sum to them in a :class:`SecAggSum`, which they must trust.

Randomness and identity come from the runtime (:class:`SecretContext`): keys, masks and
Shamir coefficients are drawn from ``ctx.secret_bytes`` (the OS CSPRNG when deployed; in
simulation a per-node stream from a master seed that no role can read), never from the
spec; signatures are ``ctx.sign`` / ``ctx.verify`` with the node identity keys. A runtime
without them cannot run secure aggregation: the round fails closed with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Protocol, cast

import torch
from torch import Tensor

from deai.errors import ConfigError, InvalidMessage, PrivacyError
from deai.job.spec import JobSpec
from deai.learning.params import vector_bytes, vector_from_bytes
from deai.node.base import NodeContext
from deai.node.hooks import Rejection
from deai.node.messages import Message, OpenJob, message
from deai.node.roles import Provider, Role, Validator, participants
from deai.node.validation import RejectReason
from deai.privacy.secagg.client import SecAggClient
from deai.privacy.secagg.crypto import SeededRandom
from deai.privacy.secagg.fixedpoint import modulus_bits
from deai.privacy.secagg.graph import neighbours
from deai.privacy.secagg.messages import (
    MAGIC,
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencySignature,
    KeyRoster,
    Kind,
    MaskedInput,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from deai.privacy.secagg.messages import Message as StageMessage
from deai.privacy.secagg.protocol import SecAggAborted, SecAggConfig, Stage, Verifier
from deai.privacy.secagg.server import SecAggOutput, SecAggServer
from deai.privacy.secrets import SimulatedSecrets

# --------------------------------------------------------------------------- runtime


class SecretContext(Protocol):
    """What secure aggregation needs of the runtime beyond ``NodeContext``."""

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        """``n`` bytes of this node's secret randomness for ``label`` (never public)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """This node's identity signature on ``data`` (EIP-191)."""
        ...

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` on ``data`` is ``node_id``'s identity signature."""
        ...


_SECRET_METHODS = ("secret_bytes", "sign", "verify")


def secret_context(ctx: object) -> SecretContext:
    """``ctx`` as a :class:`SecretContext`; ``PrivacyError`` (fail closed) if it is not one."""
    missing = [m for m in _SECRET_METHODS if not callable(getattr(ctx, m, None))]
    if missing:
        raise PrivacyError(
            "secure aggregation needs per-node secret randomness and an identity key from the "
            f"runtime, which lacks {', '.join(missing)}; refusing to run without them"
        )
    return cast(SecretContext, ctx)


class WithSecrets:
    """A ``NodeContext`` plus :class:`SecretContext` backed by a simulation's secret store,
    for runtimes that do not provide the three methods yet. Attach it in place of the
    runtime's context (``role.attach(WithSecrets(role.ctx, secrets))``)."""

    def __init__(self, inner: NodeContext, secrets: SimulatedSecrets) -> None:
        self._inner = inner
        self._secrets = secrets
        self.node_id = inner.node_id

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def now(self) -> float:
        return self._inner.now()

    def send(self, to: str, msg: Message) -> None:
        self._inner.send(to, msg)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._inner.call_later(delay_s, fn)

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return self._secrets.secret_bytes(self.node_id, label, n)

    def sign(self, data: bytes) -> bytes:
        return self._secrets.sign(self.node_id, data)

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        return self._secrets.verify(node_id, data, signature)


def _verifier(ctx: SecretContext, drawn: tuple[str, ...]) -> Verifier:
    """Client index -> node id of the round, then the runtime's identity check."""

    def verify(u: int, data: bytes, signature: bytes) -> bool:
        return 0 <= u < len(drawn) and ctx.verify(drawn[u], data, signature)

    return verify


# --------------------------------------------------------------------------- wire


@message
@dataclass(frozen=True)
class SecAggMessage(Message):
    """Provider <-> coordinating validator: one stage message of one round."""

    kind: ClassVar[str] = "secagg"
    round: int
    payload: bytes  # to_bytes() of a deai.privacy.secagg.messages dataclass


@message
@dataclass(frozen=True)
class SecAggSum(Message):
    """Coordinating validator -> other validators: the unmasked sum of a round."""

    kind: ClassVar[str] = "secagg_sum"
    round: int
    contributors: str  # JSON list of the provider ids whose updates are in the sum
    total: bytes  # float32 little-endian sum (learning.params.vector_bytes)


def payload_kind(payload: bytes) -> Kind:
    """The stage-message kind of a payload; ``InvalidMessage`` if it is not one."""
    if len(payload) < 5 or payload[:4] != MAGIC or payload[4] not in set(Kind):
        raise InvalidMessage("secagg: payload is not a secure-aggregation message")
    return Kind(payload[4])


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class StageDeadlines:
    """Latest close of each stage, as fractions of ``round_timeout_s`` after the round
    opened. All below 1, so the protocol ends before the validator's round deadline."""

    advertise: float = 0.5  # local training plus key advertisement
    share_keys: float = 0.62
    masked_input: float = 0.74
    consistency: float = 0.86
    unmask: float = 0.95

    def __post_init__(self) -> None:
        fs = (self.advertise, self.share_keys, self.masked_input, self.consistency, self.unmask)
        if not all(a < b for a, b in zip((0.0, *fs), (*fs, 1.0), strict=True)):
            raise ConfigError(f"secagg stage deadlines must increase within (0, 1), got {fs}")

    def fraction(self, stage: Stage) -> float:
        return {
            Stage.ADVERTISE_KEYS: self.advertise,
            Stage.SHARE_KEYS: self.share_keys,
            Stage.MASKED_INPUT: self.masked_input,
            Stage.CONSISTENCY: self.consistency,
            Stage.UNMASKING: self.unmask,
        }[stage]


@dataclass(frozen=True)
class SecAggRoleConfig:
    value_bits: int = 20  # b: fixed-point bits per coordinate (lowered so b + ceil(log2 n) <= 32)
    degree: int | None = None  # None: full SecAgg; even k: SecAgg+ graph with k neighbours
    noise_sigmas: float = 6.0  # coordinate range = clip + noise_sigmas * one provider's noise std
    deadlines: StageDeadlines = field(default_factory=StageDeadlines)


def round_config(
    spec: JobSpec, spec_hash: str, round_: int, dim: int, cfg: SecAggRoleConfig
) -> SecAggConfig:
    """The protocol parameters of one round, computed identically by every party.

    The fixed-point range holds every coordinate of a clipped update (``|x_i| <= ||x|| <=
    clip``) plus ``noise_sigmas`` standard deviations of the provider's noise share, so
    honest inputs are (almost surely) never cut. Raises ``ConfigError`` if the job cannot
    run secure aggregation this round (fewer than 2 drawn, threshold above n, ...).

    The threshold is at least ``holders // 2 + 1`` (more than half of each secret's
    holders) whatever the spec asks, because below that a malicious coordinator can split
    the clients into two groups that each sign a different survivor set.
    """
    p = spec.privacy
    if p is None or not p.secure_aggregation:
        raise ConfigError(f"job {spec.job_id} does not use secure aggregation")
    n = len(participants(spec, round_))
    noise_std = p.noise_multiplier * p.clip / math.sqrt(n)
    tag = f"{spec_hash}/{round_}".encode()
    graph_seed = hashlib.sha256(b"deai/secagg/graph/" + tag).digest()
    holders = min(len(v) for v in neighbours(n, cfg.degree, graph_seed)) + 1 if n >= 2 else n
    return SecAggConfig(
        n_clients=n,
        threshold=max(2, spec.min_survivors(), holders // 2 + 1),
        dim=dim,
        clip=p.clip + cfg.noise_sigmas * noise_std,
        value_bits=min(cfg.value_bits, 32 - modulus_bits(0, n)),
        degree=cfg.degree,
        graph_seed=graph_seed,
        session=hashlib.sha256(b"deai/secagg/session/" + tag).digest(),
    )


@dataclass(frozen=True)
class SecAggAbort:
    job_id: str
    round: int
    stage: Stage  # the stage at which the round could not go on
    reason: str


@dataclass(frozen=True)
class SecAggDone:
    job_id: str
    round: int
    contributors: tuple[str, ...]  # providers whose updates are in the unmasked sum
    dropped_after_sharing: tuple[str, ...]  # drop-outs whose pairwise masks were removed


@dataclass(frozen=True)
class SecAggRefusal:
    job_id: str
    round: int
    reason: str  # why this client stopped taking part (it counts as a drop-out)


# --------------------------------------------------------------------------- client


@dataclass
class _ClientRound:
    round: int
    client: SecAggClient


class SecAggClientRole(Role):
    """A provider's side: the provider's ``SecureUploader``. One per provider node."""

    def __init__(self, node_id: str, config: SecAggRoleConfig | None = None) -> None:
        super().__init__(node_id)
        self.config = config or SecAggRoleConfig()
        self.specs: dict[str, tuple[JobSpec, str]] = {}  # job id -> (spec, spec hash)
        self._live: dict[str, _ClientRound] = {}  # job id -> the round in progress
        self.refusals: list[SecAggRefusal] = []

    def on_open_job(self, sender: str, msg: OpenJob) -> None:
        try:
            spec = JobSpec.from_json(msg.spec_json)
        except InvalidMessage:
            return
        genuine = spec.spec_hash() == msg.spec_hash and spec.job_id == msg.job_id
        mine = sender == spec.requester and self.node_id in spec.providers
        secure = spec.privacy is not None and spec.privacy.secure_aggregation
        if genuine and mine and secure:
            self.specs[spec.job_id] = (spec, msg.spec_hash)

    def submit(self, job_id: str, round_: int, delta: Tensor, num_examples: int) -> None:
        """Start this round's protocol with ``delta`` (already clipped and noised).
        ``num_examples`` is not sent: the secure sum is unweighted (DP-FedAvg divides by
        the drawn count)."""
        job = self.specs.get(job_id)
        if job is None:
            return
        spec, spec_hash = job
        drawn = participants(spec, round_)
        if self.node_id not in drawn:
            return
        try:
            ctx = secret_context(self.ctx)
            cfg = round_config(spec, spec_hash, round_, int(delta.shape[0]), self.config)
            # fresh per round: the label never repeats for this node
            rand = SeededRandom(ctx.secret_bytes(f"deai/secagg/{job_id}/{round_}", 32))
            client = SecAggClient(
                drawn.index(self.node_id), cfg, delta, rand, ctx.sign, _verifier(ctx, drawn)
            )
        except (ConfigError, PrivacyError) as e:
            self._refuse(job_id, round_, e)
            return
        self._live[job_id] = _ClientRound(round_, client)
        self._send(spec, round_, client.advertise_keys())

    def on_secagg(self, sender: str, msg: SecAggMessage) -> None:
        job = self.specs.get(msg.job_id)
        live = self._live.get(msg.job_id)
        if job is None or live is None or live.round != msg.round:
            return
        if sender != job[0].validators[0]:
            return  # only the coordinator speaks for the server
        client = live.client
        try:
            kind = payload_kind(msg.payload)
            out: StageMessage
            if kind is Kind.KEY_ROSTER:
                out = client.share_keys(KeyRoster.from_bytes(msg.payload))
            elif kind is Kind.SHARE_BUNDLE:
                out = client.masked_input(ShareBundle.from_bytes(msg.payload))
            elif kind is Kind.CONSISTENCY_CHECK:
                out = client.consistency(ConsistencyCheck.from_bytes(msg.payload))
            elif kind is Kind.UNMASK_REQUEST:
                out = client.unmask(UnmaskRequest.from_bytes(msg.payload))
            else:
                raise InvalidMessage(f"secagg: a client does not accept {kind.name}")
        except (InvalidMessage, PrivacyError) as e:
            del self._live[msg.job_id]
            self._refuse(msg.job_id, msg.round, e)
            return
        self._send(job[0], msg.round, out)
        if client.stage is Stage.DONE:
            del self._live[msg.job_id]

    def _send(self, spec: JobSpec, round_: int, out: StageMessage) -> None:
        self.ctx.send(spec.validators[0], SecAggMessage(spec.job_id, round_, out.to_bytes()))

    def _refuse(self, job_id: str, round_: int, e: Exception) -> None:
        self.refusals.append(SecAggRefusal(job_id, round_, str(e)))


# --------------------------------------------------------------------------- server


@dataclass
class _ServerRound:
    job_id: str
    round: int
    participants: tuple[str, ...]  # client u is participants[u]
    server: SecAggServer
    expected: set[int]  # clients still in the protocol at this stage
    got: set[int] = field(default_factory=set)  # clients whose message this stage was accepted


def _parse(stage: Stage, payload: bytes) -> tuple[int, Callable[[SecAggServer], None]]:
    """Parse a client's payload for the server's current ``stage``: the client id it
    claims and how to feed it to the server. ``InvalidMessage`` if it is anything else."""
    kind = payload_kind(payload)
    if stage is Stage.ADVERTISE_KEYS and kind is Kind.ADVERTISE_KEYS:
        adv = AdvertiseKeys.from_bytes(payload)
        return adv.sender, lambda s: s.receive_advertise(adv)
    if stage is Stage.SHARE_KEYS and kind is Kind.SHARE_KEYS:
        shares = ShareKeys.from_bytes(payload)
        return shares.sender, lambda s: s.receive_shares(shares)
    if stage is Stage.MASKED_INPUT and kind is Kind.MASKED_INPUT:
        masked = MaskedInput.from_bytes(payload)
        return masked.sender, lambda s: s.receive_masked(masked)
    if stage is Stage.CONSISTENCY and kind is Kind.CONSISTENCY_SIGNATURE:
        sig = ConsistencySignature.from_bytes(payload)
        return sig.sender, lambda s: s.receive_consistency(sig)
    if stage is Stage.UNMASKING and kind is Kind.UNMASK_RESPONSE:
        resp = UnmaskResponse.from_bytes(payload)
        return resp.sender, lambda s: s.receive_unmask(resp)
    raise InvalidMessage(f"secagg: a {kind.name} message at stage {stage.name}")


class SecAggServerRole(Role):
    """A validator's side. One per validator node; only the job's coordinating validator
    (``spec.validators[0]``) runs the protocol, the others take the relayed sum."""

    def __init__(
        self, node_id: str, validator: Validator, config: SecAggRoleConfig | None = None
    ) -> None:
        super().__init__(node_id)
        self.validator = validator
        self.config = config or SecAggRoleConfig()
        self._rounds: dict[str, _ServerRound] = {}  # job id -> the round in progress
        self._finished: dict[str, int] = {}  # job id -> last round unmasked or aborted
        self.aborts: list[SecAggAbort] = []
        self.rejections: list[Rejection] = []
        self.completed: list[SecAggDone] = []

    # coordinator -------------------------------------------------------------------
    def on_secagg(self, sender: str, msg: SecAggMessage) -> None:
        state = self._state(msg.job_id, msg.round)
        if state is None:
            return
        try:
            if sender not in state.participants:
                raise InvalidMessage(f"secagg: {sender} is not drawn for round {msg.round}")
            u = state.participants.index(sender)
            claimed, feed = _parse(state.server.stage, msg.payload)
            if claimed != u:
                raise InvalidMessage(f"secagg: {sender} (client {u}) claims to be client {claimed}")
            feed(state.server)
        except InvalidMessage as e:
            self._reject(msg.round, sender, e)
            return
        state.got.add(u)
        if state.got >= state.expected:
            self._close(state)

    def _state(self, job_id: str, round_: int) -> _ServerRound | None:
        """This node's protocol state for an open round it coordinates, created on the
        first message of the round; None for anything stale, closed or not ours."""
        job = self.validator.jobs.get(job_id)
        if job is None or job.done or job.spec.validators[0] != self.node_id:
            return None
        st = job.round
        if st is None or st.closed or st.round != round_:
            return None
        if self._finished.get(job_id, 0) >= round_:
            return None
        cur = self._rounds.get(job_id)
        if cur is not None and cur.round == round_:
            return cur
        spec = job.spec
        try:
            ctx = secret_context(self.ctx)
            cfg = round_config(spec, spec.spec_hash(), round_, job.model.dim, self.config)
        except (ConfigError, PrivacyError) as e:
            self._abort(job_id, round_, job.model.dim, Stage.ADVERTISE_KEYS, str(e))
            return None
        server = SecAggServer(cfg, _verifier(ctx, st.participants))
        state = _ServerRound(job_id, round_, st.participants, server, set(range(cfg.n_clients)))
        self._rounds[job_id] = state
        now = self.ctx.now()
        for stage in list(Stage)[:-1]:
            at = st.started_s + self.config.deadlines.fraction(stage) * spec.round_timeout_s
            self.ctx.call_later(max(0.0, at - now), partial(self._deadline, state, stage))
        return state

    def _deadline(self, state: _ServerRound, stage: Stage) -> None:
        if self._rounds.get(state.job_id) is state and state.server.stage is stage:
            self._close(state)

    def _close(self, state: _ServerRound) -> None:
        """Close the current stage with whoever answered and send the next messages."""
        srv = state.server
        stage = srv.stage
        try:
            out: Mapping[int, StageMessage]
            if stage is Stage.ADVERTISE_KEYS:
                out = srv.close_advertise()
            elif stage is Stage.SHARE_KEYS:
                out = srv.close_shares()
            elif stage is Stage.MASKED_INPUT:
                out = srv.close_masked()
            elif stage is Stage.CONSISTENCY:
                out = srv.close_consistency()
            else:
                self._deliver(state, srv.finish())
                return
        except SecAggAborted as e:
            self._abort(state.job_id, state.round, srv.config.dim, e.stage, str(e))
            return
        state.expected, state.got = set(out), set()
        for u, m in out.items():
            msg = SecAggMessage(state.job_id, state.round, m.to_bytes())
            self.ctx.send(state.participants[u], msg)

    def _deliver(self, state: _ServerRound, output: SecAggOutput) -> None:
        self._end(state.job_id, state.round)
        contributors = tuple(state.participants[u] for u in output.survivors)
        dropped = tuple(state.participants[u] for u in output.dropped_after_sharing)
        self.completed.append(SecAggDone(state.job_id, state.round, contributors, dropped))
        job = self.validator.jobs[state.job_id]
        relay = SecAggSum(
            state.job_id, state.round, json.dumps(contributors), vector_bytes(output.vector)
        )
        for v in job.spec.validators[1:]:
            self.ctx.send(v, relay)
        self.validator.accept_sum(state.job_id, state.round, output.vector, contributors)

    def _abort(self, job_id: str, round_: int, dim: int, stage: Stage, reason: str) -> None:
        """Record why, and close the round with no contributors so the job moves on."""
        self._end(job_id, round_)
        self.aborts.append(SecAggAbort(job_id, round_, stage, reason))
        self.validator.accept_sum(job_id, round_, torch.zeros(dim), ())

    def _end(self, job_id: str, round_: int) -> None:
        self._rounds.pop(job_id, None)
        self._finished[job_id] = round_

    def _reject(self, round_: int, sender: str, e: Exception) -> None:
        rej = Rejection(round_, sender, str(RejectReason.MALFORMED), str(e))
        self.rejections.append(rej)
        self.validator.observer.on_rejection(self.node_id, rej)

    # other validators ----------------------------------------------------------------
    def on_secagg_sum(self, sender: str, msg: SecAggSum) -> None:
        job = self.validator.jobs.get(msg.job_id)
        if job is None or sender != job.spec.validators[0] or sender == self.node_id:
            return
        try:
            names = json.loads(msg.contributors)
            drawn = participants(job.spec, msg.round)
            if not isinstance(names, list) or len(set(names)) != len(names):
                raise InvalidMessage("secagg: contributors must be a list of distinct ids")
            if not all(isinstance(c, str) and c in drawn for c in names):
                raise InvalidMessage("secagg: a contributor was not drawn this round")
            total = vector_from_bytes(msg.total, job.model.dim)
            if not bool(torch.isfinite(total).all()):
                raise InvalidMessage("secagg: relayed sum is not finite")
        except (InvalidMessage, ValueError) as e:
            self._reject(msg.round, sender, e)
            return
        self.validator.accept_sum(msg.job_id, msg.round, total, tuple(names))


def install(
    provider: Provider | None,
    validator: Validator | None,
    config: SecAggRoleConfig | None = None,
) -> list[Role]:
    """The secure-aggregation roles to add to a node beside its ``provider`` and/or
    ``validator`` (sets ``provider.uploader``)::

        sim.add_node(p.node_id, p, *install(p, None))
        sim.add_node(v.node_id, v, *install(None, v))
    """
    roles: list[Role] = []
    if provider is not None:
        client = SecAggClientRole(provider.node_id, config)
        provider.uploader = client
        roles.append(client)
    if validator is not None:
        roles.append(SecAggServerRole(validator.node_id, validator, config))
    return roles
