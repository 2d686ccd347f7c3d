"""Secure aggregation as node roles over the simulated transport: the validator gets the
exact sum (and never a cleartext update), drop-outs up to n - t at any stage are
recovered, more abort the round cleanly with a reason, a forged message is rejected and
its sender treated as dropped, every byte goes through the transport's counter, a
man-in-the-middle coordinator learns nothing, and keys come from the node's secret."""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import torch
from torch import Tensor

from deai.errors import InvalidMessage, PrivacyError
from deai.job.spec import (
    AlgorithmSpec,
    DataSchema,
    JobSpec,
    ModelSpec,
    Parties,
    PrivacySpec,
    Weighting,
)
from deai.learning.data import DatasetName, Splits, load_dataset
from deai.node.messages import Message, encode
from deai.node.roles import Provider, Requester, Validator, model_for
from deai.node.secagg import (
    SecAggClientRole,
    SecAggMessage,
    SecAggRoleConfig,
    SecAggServerRole,
    StageDeadlines,
    WithSecrets,
    install,
    payload_kind,
    round_config,
    secret_context,
)
from deai.privacy.secagg.crypto import keypair, make_randbytes
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    KeyRoster,
    Kind,
    MaskedInput,
    ShareBundle,
    ShareKeys,
)
from deai.privacy.secagg.mitm import KeySwapMITM
from deai.privacy.secrets import SimulatedSecrets
from deai.sim.engine import Simulation
from deai.sim.network import FaultModel, LinkProfile, NetworkModel

N = 5  # providers, all drawn every round
T = 3  # SecAgg threshold (PrivacySpec.min_survivors): n - t = 2 drop-outs are tolerated
TIMEOUT = 60.0
PROVIDERS = tuple(f"p{i}" for i in range(N))


def _spec(
    *, validators: int = 1, rounds: int = 1, noise: float = 0.0, secure: bool = True
) -> JobSpec:
    splits = _splits()
    return JobSpec(
        name="job",
        rounds=rounds,
        seed=7,
        algorithm=AlgorithmSpec(steps=2, batch_size=16, lr=0.5, weighting=Weighting.UNIFORM),
        model=ModelSpec(name="mlp", hidden=[8]),
        data=DataSchema(input_shape=splits.train.input_shape, num_classes=splits.train.num_classes),
        parties=Parties(
            requester="req",
            providers=PROVIDERS,
            validators=tuple(f"v{i}" for i in range(validators)),
        ),
        round_timeout_s=TIMEOUT,
        privacy=PrivacySpec(
            clip=0.05, noise_multiplier=noise, secure_aggregation=secure, threshold=T / N
        ),
    )


@functools.cache
def _splits() -> Splits:
    return load_dataset(DatasetName.SYNTHETIC, seed=0, n_samples=300, n_features=6, n_classes=3)


class Tap:
    """Records each provider's (clipped, noised) update on its way into the client role."""

    def __init__(self, inner: SecAggClientRole, log: dict[tuple[str, int], Tensor]) -> None:
        self.inner, self.log = inner, log

    def submit(self, job_id: str, round_: int, delta: Tensor, num_examples: int) -> None:
        self.log[(self.inner.node_id, round_)] = delta.clone()
        self.inner.submit(job_id, round_, delta, num_examples)


@dataclass
class Wire:
    """Transport hook: counts what each node puts on the wire, loses the secagg messages
    named in ``drop`` ((sender, stage kind, round)) and rewrites those in ``forge``."""

    drop: set[tuple[str, Kind, int]] = field(default_factory=set)
    forge: dict[tuple[str, Kind], bytes] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    secagg_bytes: int = 0

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
        if isinstance(msg, SecAggMessage):
            kind = payload_kind(msg.payload)
            if (src, kind, msg.round) in self.drop:
                return True  # lost: never counted, never delivered
            if (src, kind) in self.forge:
                msg = replace(msg, payload=self.forge[(src, kind)])
            self.secagg_bytes += len(encode(msg))
        self.sent[src] += len(encode(msg))
        sim.transmit(src, dst, msg)
        return True


@dataclass
class Net:
    sim: Simulation
    validators: list[Validator]
    servers: list[SecAggServerRole]
    clients: list[SecAggClientRole]
    requester: Requester
    deltas: dict[tuple[str, int], Tensor]
    wire: Wire


def _run(
    spec: JobSpec,
    wire: Wire | None = None,
    faults: FaultModel | None = None,
    master: bytes | None = b"master seed of the simulation",
) -> Net:
    """Run the job; ``master=None`` leaves the runtime without secrets (fails closed)."""
    splits = _splits()
    wire = wire or Wire()
    link = LinkProfile(1e8, 1e8, 0.01, 1000.0)
    nodes = ["req", *spec.validators, *spec.providers]
    sim = Simulation(NetworkModel({n: link for n in nodes}), faults, wire)
    requester = Requester("req", spec)
    sim.add_node("req", requester)
    net = Net(sim, [], [], [], requester, {}, wire)
    for v in spec.validators:
        validator = Validator(v, lambda _spec: splits.validation, keep_updates=True)
        roles = install(None, validator)
        sim.add_node(v, validator, *roles)
        net.validators.append(validator)
        net.servers += [r for r in roles if isinstance(r, SecAggServerRole)]
    parts = np.array_split(np.arange(len(splits.train)), N)
    for p, idx in zip(spec.providers, parts, strict=True):
        provider = Provider(p, splits.train.subset(idx))
        roles = install(provider, None)
        client = roles[0]
        assert isinstance(client, SecAggClientRole)
        provider.uploader = Tap(client, net.deltas)
        sim.add_node(p, provider, *roles)
        net.clients.append(client)
    for roles in sim.nodes.values():
        for role in roles:
            if master is not None:
                role.attach(WithSecrets(role.ctx, SimulatedSecrets(master)))
            elif isinstance(role, SecAggClientRole | SecAggServerRole):
                role.attach(_NoSecrets(role.ctx))  # the SecAgg roles get no secrets
    sim.run(stop=lambda: requester.result is not None)
    return net


class _NoSecrets:
    """A context without ``secret_bytes``/``sign``/``verify`` (a runtime that lacks them)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.node_id = inner.node_id  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        if name in ("secret_bytes", "sign", "verify"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def _bound(spec: JobSpec, contributors: int) -> float:
    """Fixed-point error of the mean: contributors * range / (2^b - 1) / n, plus float32."""
    cfg = round_config(spec, spec.spec_hash(), 1, model_for(spec).dim, SecAggRoleConfig())
    return contributors * cfg.clip / ((1 << cfg.fixed_point.value_bits) - 1) / N + 1e-7


def _step(net: Net, round_: int, validator: int = 0) -> Tensor:
    """The aggregate the validator applied in ``round_`` (server_lr = 1)."""
    outs = net.validators[validator].outcomes
    before = model_for(next(iter(net.validators[0].jobs.values())).spec).initial_vector()
    if round_ > 1:
        before = outs[round_ - 2].params
    return outs[round_ - 1].params - before


def _expected(net: Net, round_: int, contributors: tuple[str, ...]) -> Tensor:
    return torch.stack([net.deltas[(p, round_)] for p in contributors]).sum(dim=0) / N


def test_validator_gets_the_plain_mean_and_no_cleartext_update() -> None:
    spec = _spec(validators=2)
    net = _run(spec)
    plain = _run(_spec(validators=2, secure=False))
    out = net.validators[0].outcomes[0]
    assert out.accepted == PROVIDERS and out.missing == ()
    assert net.servers[0].aborts == [] and net.servers[0].rejections == []
    # equal to the plain DP-FedAvg aggregate of the clipped updates, within fixed point
    ref = plain.validators[0].outcomes[0].params - model_for(spec).initial_vector()
    assert float(ref.abs().max()) > 100 * _bound(spec, N)  # the comparison is not vacuous
    torch.testing.assert_close(_step(net, 1), ref, atol=_bound(spec, N), rtol=0)
    torch.testing.assert_close(
        _step(net, 1), _expected(net, 1, PROVIDERS), atol=_bound(spec, N), rtol=0
    )
    # the other validator took the relayed sum and reached the same model
    assert net.validators[1].outcomes[0].model_hash == out.model_hash
    # no stage waited for its deadline: every client answered, so each stage closed early
    assert out.closed_s - out.started_s < StageDeadlines().advertise * TIMEOUT
    # every byte went through the transport's counter; nothing travelled in the clear
    assert net.sim.bytes.by_kind["update"] == 0
    assert net.sim.bytes.by_kind["secagg"] == net.wire.secagg_bytes > 0
    for p in PROVIDERS:
        assert net.sim.bytes.sent[p] == net.wire.sent[p]
    assert net.requester.result_hash == out.model_hash


@pytest.mark.parametrize(
    "drops",
    [
        (Kind.ADVERTISE_KEYS, Kind.MASKED_INPUT),  # before sharing, after sharing
        (Kind.SHARE_KEYS, Kind.UNMASK_RESPONSE),  # an unmask drop-out stays in the sum
        (Kind.MASKED_INPUT, Kind.MASKED_INPUT),
    ],
)
def test_dropouts_up_to_n_minus_t_are_recovered_exactly(drops: tuple[Kind, Kind]) -> None:
    spec = _spec(noise=0.5, rounds=2)
    lost = {("p1", drops[0], 1), ("p3", drops[1], 1)}
    net = _run(spec, Wire(drop=lost))
    in_sum = tuple(
        p
        for p in PROVIDERS
        if not any(src == p and k is not Kind.UNMASK_RESPONSE for src, k, _ in lost)
    )
    out = net.validators[0].outcomes[0]
    assert out.accepted == in_sum
    assert set(out.missing) == set(PROVIDERS) - set(in_sum)
    torch.testing.assert_close(
        _step(net, 1), _expected(net, 1, in_sum), atol=_bound(spec, N), rtol=0
    )
    assert out.epsilon is not None and 0 < out.epsilon < float("inf")  # DP is accounted
    done = net.servers[0].completed[0]
    assert done.contributors == in_sum
    # whose pairwise masks had to be reconstructed: those lost after sharing their keys
    assert done.dropped_after_sharing == tuple(
        sorted(src for src, k, _ in lost if k is Kind.MASKED_INPUT)
    )
    # round 2 has no drop-outs and is complete
    assert net.validators[0].outcomes[1].accepted == PROVIDERS
    assert net.servers[0].aborts == []


def test_fault_model_dropouts_are_recovered() -> None:
    spec = _spec(noise=0.5)

    def down(seed: int) -> list[str]:
        f = FaultModel(0.3, seed, set(PROVIDERS))
        return [p for p in PROVIDERS if f.is_down(p, 1)]

    seed = next(s for s in range(200) if len(down(s)) == N - T)
    net = _run(spec, faults=FaultModel(0.3, seed, set(PROVIDERS)))
    alive = tuple(p for p in PROVIDERS if p not in down(seed))
    out = net.validators[0].outcomes[0]
    assert out.accepted == alive
    torch.testing.assert_close(
        _step(net, 1), _expected(net, 1, alive), atol=_bound(spec, N), rtol=0
    )
    # the stage-0 deadline (not the round's) closed the key advertisement
    assert out.closed_s - out.started_s == pytest.approx(
        StageDeadlines().advertise * TIMEOUT, abs=1.0
    )


@pytest.mark.parametrize("kind", [Kind.MASKED_INPUT, Kind.UNMASK_RESPONSE])
def test_more_than_n_minus_t_dropouts_abort_the_round_cleanly(kind: Kind) -> None:
    spec = _spec(noise=0.5, rounds=2)
    lost = {(p, kind, 1) for p in ("p0", "p2", "p4")}
    net = _run(spec, Wire(drop=lost))
    server = net.servers[0]
    assert len(server.aborts) == 1
    abort = server.aborts[0]
    assert abort.job_id.startswith("job-") and abort.round == 1
    assert "threshold" in abort.reason or "too many drop-outs" in abort.reason
    first, second = net.validators[0].outcomes
    assert first.accepted == () and first.epsilon == 0.0  # no update, nothing charged
    torch.testing.assert_close(first.params, model_for(spec).initial_vector())
    assert first.closed_s - first.started_s < TIMEOUT  # closed by the abort, not the timeout
    assert second.accepted == PROVIDERS  # the job went on
    torch.testing.assert_close(
        _step(net, 2), _expected(net, 2, PROVIDERS), atol=_bound(spec, N), rtol=0
    )


def test_forged_messages_are_rejected_and_the_sender_dropped() -> None:
    spec = _spec()
    rand = make_randbytes(b"forger")
    impersonation = AdvertiseKeys(0, rand(32), rand(32), b"").to_bytes()  # p2 claims to be p0
    net = _run(
        spec,
        Wire(
            forge={
                ("p2", Kind.ADVERTISE_KEYS): impersonation,
                ("p4", Kind.MASKED_INPUT): b"DSA1\x05" + b"\x00" * 20,  # truncated
            }
        ),
    )
    server = net.servers[0]
    assert [r.sender for r in server.rejections] == ["p2", "p4"]
    assert "claims to be client 0" in server.rejections[0].detail
    honest = ("p0", "p1", "p3")
    assert net.validators[0].outcomes[0].accepted == honest
    torch.testing.assert_close(
        _step(net, 1), _expected(net, 1, honest), atol=_bound(spec, N), rtol=0
    )
    assert server.aborts == []


class Meddler(Wire):
    """Wire that, when v0 sends p0 its key roster, first has v1 (not the coordinator)
    send p0 junk, and sends p1 a roster addressed to someone else."""

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
        if isinstance(msg, SecAggMessage) and payload_kind(msg.payload) is Kind.KEY_ROSTER:
            if dst == "p0":
                sim.transmit("v1", "p0", replace(msg, payload=b"junk"))
            if dst == "p1":
                roster = KeyRoster.from_bytes(msg.payload)
                msg = replace(msg, payload=replace(roster, recipient=2).to_bytes())
        return super().intercept(sim, src, dst, msg)


def test_client_refuses_a_bad_roster_and_ignores_non_coordinators() -> None:
    spec = _spec(validators=2)
    net = _run(spec, Meddler())
    assert net.clients[0].refusals == []  # v1's junk was ignored, not acted on
    (refusal,) = net.clients[1].refusals
    assert (refusal.round, "malformed key roster" in refusal.reason) == (1, True)
    rest = ("p0", "p2", "p3", "p4")  # p1 stopped after advertising: a drop-out
    assert net.validators[0].outcomes[0].accepted == rest
    torch.testing.assert_close(_step(net, 1), _expected(net, 1, rest), atol=_bound(spec, N), rtol=0)
    advert = AdvertiseKeys(0, b"a" * 32, b"b" * 32, b"").to_bytes()
    assert payload_kind(advert) is Kind.ADVERTISE_KEYS
    with pytest.raises(InvalidMessage, match="not a secure-aggregation message"):
        payload_kind(b"DSA1\x63")


class MITMWire(Wire):
    """A coordinator that swaps every client's encryption key in the rosters it relays and
    re-encrypts the shares in transit (it controls the relay, so it can)."""

    def __init__(self, spec: JobSpec) -> None:
        super().__init__()
        cfg = round_config(spec, spec.spec_hash(), 1, model_for(spec).dim, SecAggRoleConfig())
        self.attack = KeySwapMITM(cfg, make_randbytes(b"attacker"))

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
        if isinstance(msg, SecAggMessage) and msg.round == 1:
            kind, raw = payload_kind(msg.payload), msg.payload
            if kind is Kind.ADVERTISE_KEYS:
                self.attack.on_advertise(AdvertiseKeys.from_bytes(raw))
            elif kind is Kind.KEY_ROSTER:
                raw = self.attack.on_roster(KeyRoster.from_bytes(raw)).to_bytes()
            elif kind is Kind.SHARE_KEYS:
                raw = self.attack.on_shares(ShareKeys.from_bytes(raw)).to_bytes()
            elif kind is Kind.SHARE_BUNDLE:
                self.attack.on_bundle(ShareBundle.from_bytes(raw))
            elif kind is Kind.MASKED_INPUT:
                self.attack.on_masked(MaskedInput.from_bytes(raw))
            msg = replace(msg, payload=raw)
        return super().intercept(sim, src, dst, msg)


def test_man_in_the_middle_coordinator_learns_nothing() -> None:
    spec = _spec(noise=0.5)
    wire = MITMWire(spec)
    net = _run(spec, wire)
    # every client saw a key its peer never signed, and aborted before sharing anything
    for client in net.clients:
        (refusal,) = client.refusals
        assert "not signed by client" in refusal.reason
    assert wire.attack.shares_read == 0
    assert wire.attack.recover() == {}
    (abort,) = net.servers[0].aborts
    assert abort.stage.name == "SHARE_KEYS"
    out = net.validators[0].outcomes[0]
    assert out.accepted == () and out.epsilon == 0.0  # no update, nothing charged
    assert net.sim.bytes.by_kind["update"] == 0


def test_a_runtime_without_secrets_fails_closed() -> None:
    net = _run(_spec(), master=None)
    for client in net.clients:
        (refusal,) = client.refusals
        assert "secret randomness" in refusal.reason
    assert net.servers[0].completed == []  # nothing reached the coordinator to sum
    assert net.validators[0].outcomes[0].accepted == ()
    with pytest.raises(PrivacyError, match="lacks secret_bytes, sign, verify"):
        secret_context(net.servers[0].ctx)
    assert net.sim.bytes.by_kind["update"] == 0 and net.sim.bytes.by_kind["secagg"] == 0


class Recorder(Wire):
    def __init__(self) -> None:
        super().__init__()
        self.adverts: dict[str, AdvertiseKeys] = {}

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
        if isinstance(msg, SecAggMessage) and payload_kind(msg.payload) is Kind.ADVERTISE_KEYS:
            self.adverts[src] = AdvertiseKeys.from_bytes(msg.payload)
        return super().intercept(sim, src, dst, msg)


def test_keys_come_from_the_node_secret_not_from_the_spec() -> None:
    spec = _spec()
    runs = [Recorder(), Recorder(), Recorder()]
    for wire, master in zip(
        runs, (b"master seed no. 1", b"master seed no. 1", b"master seed no. 2"), strict=True
    ):
        _run(spec, wire, master=master)
    a, b, c = (w.adverts for w in runs)
    assert a == b  # reproducible from the simulation's master seed
    for p in PROVIDERS:
        assert a[p].c_pk != c[p].c_pk and a[p].s_pk != c[p].s_pk  # and only from it
        # what anyone holding the spec could derive (the old seeding) is not the key
        old = hashlib.sha256(f"deai/secagg/{spec.seed}/job/{p}/1".encode()).digest()
        assert keypair(make_randbytes(old))[1] not in (a[p].c_pk, a[p].s_pk)
