"""Secure aggregation: exact unmasking under drop-outs, clean aborts, uniform-looking
masked vectors, and a defensive client and server."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from deai.errors import InvalidMessage, PrivacyError
from deai.privacy.secagg import (
    DropoutPlan,
    FixedPoint,
    SecAggAborted,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    Stage,
    pack,
    run_secagg_inprocess,
    shamir,
    unpack,
)
from deai.privacy.secagg.crypto import make_randbytes
from deai.privacy.secagg.inprocess import Identities
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    Message,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
)

STAGES = list(Stage)[:-1]


def _inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1


def _expected_words(cfg: SecAggConfig, x: torch.Tensor, ids: tuple[int, ...]) -> np.ndarray:
    total = sum(cfg.fixed_point.encode(x[u]).astype(np.uint64) for u in ids)
    return np.asarray(total, dtype=np.uint64)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(3, 8),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_masks_cancel_exactly_or_abort(n: int, data: st.DataObject, seed: int) -> None:
    t = data.draw(st.integers(n // 2 + 1, n), label="t")
    drop_stage = data.draw(
        st.lists(st.sampled_from([None, *STAGES]), min_size=n, max_size=n), label="drops"
    )
    at: dict[Stage, set[int]] = {}
    for u, s in enumerate(drop_stage):
        if s is not None:
            at.setdefault(s, set()).add(u)
    plan = DropoutPlan({s: frozenset(v) for s, v in at.items()})
    cfg = SecAggConfig(n_clients=n, threshold=t, dim=8, clip=1.0)
    x = _inputs(n, 8, seed)
    dropped = sum(len(v) for v in at.values())
    if dropped > n - t:
        with pytest.raises(SecAggAborted, match=r"threshold|needed"):
            run_secagg_inprocess(cfg, x, plan, seed=seed)
        return
    run = run_secagg_inprocess(cfg, x, plan, seed=seed)
    before_input = plan.silent(Stage.MASKED_INPUT)
    survivors = tuple(u for u in range(n) if u not in before_input)
    assert run.output.survivors == survivors
    assert np.array_equal(run.output.words.astype(np.uint64), _expected_words(cfg, x, survivors))
    err = (run.output.vector - x[list(survivors)].sum(0)).abs().max().item()
    assert err <= len(survivors) * cfg.fixed_point.step / 2 + 1e-5


def test_secagg_plus_exact_with_dropouts() -> None:
    n, d = 12, 64
    cfg = SecAggConfig(n_clients=n, threshold=3, dim=d, clip=2.0, degree=4, graph_seed=b"g")
    assert all(len(cfg.neighbours(u)) == 4 for u in range(n))
    x = _inputs(n, d, 1)
    plan = DropoutPlan({Stage.MASKED_INPUT: frozenset({0}), Stage.UNMASKING: frozenset({5})})
    run = run_secagg_inprocess(cfg, x, plan, seed=3)
    survivors = tuple(u for u in range(n) if u != 0)
    assert np.array_equal(run.output.words.astype(np.uint64), _expected_words(cfg, x, survivors))
    assert run.output.dropped_after_sharing == (0,)


def test_secagg_plus_aborts_when_a_neighbourhood_loses_its_holders() -> None:
    n = 12
    cfg = SecAggConfig(n_clients=n, threshold=4, dim=4, clip=1.0, degree=4, graph_seed=b"g")
    victim = 0
    # the victim's four neighbours drop after the victim's input is in; only the victim
    # holds a share of its own self-mask seed, so it cannot be removed
    plan = DropoutPlan({Stage.UNMASKING: cfg.neighbours(victim)})
    with pytest.raises(SecAggAborted, match=f"client {victim}'s self-mask seed"):
        run_secagg_inprocess(cfg, _inputs(n, 4, 0), plan)


def test_lone_masked_vector_looks_uniform() -> None:
    """A single client's masked input, for an all-zero input, is uniform mod 2^k (chi-square
    over 64 buckets of the top bits); its plain encoding is not."""
    n, d = 3, 32768
    cfg = SecAggConfig(n_clients=n, threshold=2, dim=d, clip=1.0)
    ids = Identities(n, seed=0)
    server = SecAggServer(cfg, ids.verify)
    clients = [
        SecAggClient(
            u, cfg, torch.zeros(d), make_randbytes(bytes([u]) * 8), ids.signer(u), ids.verify
        )
        for u in range(n)
    ]
    for c in clients:
        server.receive_advertise(c.advertise_keys())
    rosters = server.close_advertise()
    for c in clients:
        server.receive_shares(c.share_keys(rosters[c.id]))
    bundles = server.close_shares()
    masked = clients[0].masked_input(bundles[0])
    words = unpack(masked.payload, masked.bits, d)
    buckets = (words >> np.uint32(cfg.bits - 6)).astype(np.int64)
    counts = np.bincount(buckets, minlength=64)
    assert chisquare(counts).pvalue > 1e-3
    plain = cfg.fixed_point.encode(torch.zeros(d)) >> np.uint32(cfg.bits - 6)
    assert chisquare(np.bincount(plain.astype(np.int64), minlength=64)).pvalue < 1e-9


def _clients(
    n: int = 3, t: int = 2, d: int = 4
) -> tuple[SecAggConfig, list[SecAggClient], SecAggServer]:
    cfg = SecAggConfig(n_clients=n, threshold=t, dim=d, clip=1.0)
    ids = Identities(n, seed=0)
    clients = [
        SecAggClient(u, cfg, torch.zeros(d), make_randbytes(bytes([u])), ids.signer(u), ids.verify)
        for u in range(n)
    ]
    return cfg, clients, SecAggServer(cfg, ids.verify)


def _three_clients(d: int = 4) -> tuple[SecAggConfig, list[SecAggClient], SecAggServer]:
    return _clients(3, 2, d)


def test_client_refuses_to_unmask_when_declared_dropped() -> None:
    _, clients, server = _three_clients()
    for c in clients:
        server.receive_advertise(c.advertise_keys())
    rosters = server.close_advertise()
    for c in clients:
        server.receive_shares(c.share_keys(rosters[c.id]))
    bundles = server.close_shares()
    for c in clients:
        server.receive_masked(c.masked_input(bundles[c.id]))
    # a cheating server asks client 0 for its own mask key by claiming it dropped
    with pytest.raises(PrivacyError, match="declared dropped"):
        clients[0].consistency(ConsistencyCheck(0, (1, 2)))


def test_client_rejects_tampered_share_ciphertext() -> None:
    _, clients, server = _three_clients()
    for c in clients:
        server.receive_advertise(c.advertise_keys())
    rosters = server.close_advertise()
    for c in clients:
        server.receive_shares(c.share_keys(rosters[c.id]))
    bundle = server.close_shares()[0]
    sender, ct = bundle.ciphertexts[0]
    forged = ShareBundle(0, ((sender, ct[:-1] + bytes([ct[-1] ^ 1])), *bundle.ciphertexts[1:]))
    with pytest.raises(PrivacyError, match="authentication"):
        clients[0].masked_input(forged)


def test_server_rejects_repeated_or_foreign_keys() -> None:
    _, clients, server = _three_clients()
    first = clients[0].advertise_keys()
    server.receive_advertise(first)
    with pytest.raises(InvalidMessage, match="repeated"):
        server.receive_advertise(AdvertiseKeys(0, b"x" * 32, b"y" * 32, first.signature))
    with pytest.raises(InvalidMessage, match="unknown client"):
        server.receive_advertise(AdvertiseKeys(9, b"x" * 32, b"y" * 32, b""))
    # client 2's real keys under client 1's signature: not signed by client 2
    second = clients[1].advertise_keys()
    third = clients[2].advertise_keys()
    with pytest.raises(InvalidMessage, match="not signed"):
        server.receive_advertise(AdvertiseKeys(2, third.c_pk, third.s_pk, second.signature))


def test_server_rejects_wrong_shape_and_stage() -> None:
    cfg, clients, server = _three_clients()
    with pytest.raises(InvalidMessage, match="ADVERTISE_KEYS"):
        server.receive_masked(MaskedInput(0, cfg.bits, cfg.dim, b""))
    for c in clients:
        server.receive_advertise(c.advertise_keys())
    rosters = server.close_advertise()
    for c in clients:
        server.receive_shares(c.share_keys(rosters[c.id]))
    bundles = server.close_shares()
    good = [c.masked_input(bundles[c.id]) for c in clients]
    with pytest.raises(InvalidMessage, match="wrong shape"):
        server.receive_masked(MaskedInput(0, cfg.bits, cfg.dim + 1, good[0].payload))
    with pytest.raises(InvalidMessage, match="bytes"):
        server.receive_masked(MaskedInput(0, cfg.bits, cfg.dim, good[0].payload[:-1]))
    for m in good:  # the round goes on with the well-formed inputs
        server.receive_masked(m)
    checks = server.close_masked()
    sigs = [c.consistency(checks[c.id]) for c in clients]
    with pytest.raises(InvalidMessage, match="another survivor set"):
        server.receive_consistency(ConsistencySignature(0, sigs[1].signature))
    for sig in sigs:
        server.receive_consistency(sig)
    requests = server.close_consistency()
    for c in clients:
        server.receive_unmask(c.unmask(requests[c.id]))
    assert np.array_equal(
        server.finish().words, np.uint32(3) * cfg.fixed_point.encode(torch.zeros(cfg.dim))
    )


def test_messages_roundtrip_and_reject_garbage() -> None:
    msgs: list[Message] = [
        AdvertiseKeys(3, b"a" * 32, b"b" * 32, b"s" * 65),
        KeyRoster(1, ()),
        ShareBundle(1, ((2, b"xyz"), (4, b""))),
        MaskedInput(7, 23, 5, b"\x01\x02"),
        ConsistencyCheck(2, (0, 1, 5)),
        ConsistencySignature(2, b"q" * 65),
        UnmaskRequest(2, (0, 1, 5), ((0, b"r" * 65),)),
        UnmaskResponse(2, ((0, b"s" * 66),), ((3, b"k" * 66),)),
    ]
    for m in msgs:
        raw = m.to_bytes()
        assert type(m).from_bytes(raw) == m
        with pytest.raises(InvalidMessage):
            type(m).from_bytes(raw[:-1])
        with pytest.raises(InvalidMessage):
            type(m).from_bytes(raw + b"\x00")
    with pytest.raises(InvalidMessage, match="expected a KEY_ROSTER"):
        KeyRoster.from_bytes(msgs[0].to_bytes())
    with pytest.raises(InvalidMessage, match="count"):
        ConsistencyCheck.from_bytes(b"DSA1\x08" + bytes(4) + b"\xff\xff\xff\x7f")


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 32), dim=st.integers(1, 50), seed=st.integers(0, 1000))
def test_pack_roundtrip(bits: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 1 << bits, size=dim, dtype=np.uint64).astype(np.uint32)
    raw = pack(words, bits)
    assert len(raw) == (dim * bits + 7) // 8
    assert np.array_equal(unpack(raw, bits, dim), words)


def test_fixed_point_never_overflows_at_the_bound() -> None:
    fp = FixedPoint(clip=1.0, value_bits=16, bits=23)  # 16 + ceil(log2 100)
    top = fp.encode(torch.full((4,), 5.0))  # clipped to the maximum code
    assert int(top[0]) == (1 << 16) - 1
    assert fp.max_clients() >= 100
    total = (top.astype(np.uint64) * 100) & ((1 << 23) - 1)
    assert np.allclose(fp.decode_sum(total.astype(np.uint32), 100).numpy(), 100.0)


@settings(max_examples=20, deadline=None)
@given(t=st.integers(1, 6), extra=st.integers(0, 4), seed=st.binary(min_size=1, max_size=8))
def test_shamir_threshold(t: int, extra: int, seed: bytes) -> None:
    rand = make_randbytes(seed)
    secret = rand(32)
    holders = list(range(1, t + extra + 1))
    shares = shamir.split(secret, holders, t, rand)
    subset = dict(list(shares.items())[extra:])  # any t or more shares
    assert shamir.combine(subset, t) == secret
    if t > 1:
        with pytest.raises(PrivacyError, match="need"):
            shamir.combine(dict(list(shares.items())[: t - 1]), t)
