"""Secure aggregation against a malicious server (Bonawitz et al. 2017, Fig. 5).

The attacks are written as the server would run them, against the real client state
machines: a man-in-the-middle that swaps keys (it recovers every input from clients that
do not check signatures, and nothing from ours), a server that shows clients different
survivor sets to collect both shares of a secret (property test: never both, for any split
and any coalition below the stated bound), and replays across stages and sessions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deai.errors import ConfigError, InvalidMessage, PrivacyError
from deai.privacy.secagg import SecAggClient, SecAggConfig, SecAggServer
from deai.privacy.secagg.crypto import make_randbytes
from deai.privacy.secagg.inprocess import Identities
from deai.privacy.secagg.messages import (
    ConsistencyCheck,
    MaskedInput,
    UnmaskRequest,
)
from deai.privacy.secagg.mitm import KeySwapMITM
from deai.privacy.secagg.protocol import Verifier, consistency_bytes

Setup = tuple[SecAggConfig, torch.Tensor, list[SecAggClient], SecAggServer, Identities]


def _setup(n: int, t: int, d: int = 16, verify: Verifier | None = None, seed: int = 0) -> Setup:
    cfg = SecAggConfig(n_clients=n, threshold=t, dim=d, clip=1.0)
    ids = Identities(n, seed)
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    check = verify or ids.verify
    clients = [
        SecAggClient(u, cfg, x[u], make_randbytes(f"c/{seed}/{u}".encode()), ids.signer(u), check)
        for u in range(n)
    ]
    return cfg, x, clients, SecAggServer(cfg, ids.verify), ids


def _mitm_round(verify: Verifier | None) -> tuple[dict[int, torch.Tensor], torch.Tensor, int]:
    """The key-swapping server against 8 clients; returns (recovered, inputs, refusals)."""
    n = 8
    cfg, x, clients, server, _ = _setup(n, 5, verify=verify)
    attack = KeySwapMITM(cfg, make_randbytes(b"attacker"))
    refused = 0
    for c in clients:
        adv = c.advertise_keys()
        attack.on_advertise(adv)
        server.receive_advertise(adv)
    for u, roster in server.close_advertise().items():
        try:
            shares = clients[u].share_keys(attack.on_roster(roster))
        except PrivacyError:
            refused += 1
            continue
        server.receive_shares(attack.on_shares(shares))
    if refused == n:
        return attack.recover(), x, refused
    masked: list[MaskedInput] = []
    for u, bundle in server.close_shares().items():
        attack.on_bundle(bundle)
        masked.append(clients[u].masked_input(bundle))
    for m in masked:
        attack.on_masked(m)
    return attack.recover(), x, refused


def test_man_in_the_middle_recovers_every_input_from_clients_that_do_not_check() -> None:
    recovered, x, refused = _mitm_round(verify=lambda u, data, sig: True)  # unsigned rosters
    assert refused == 0 and sorted(recovered) == list(range(8))
    step = SecAggConfig(n_clients=8, threshold=5, dim=16, clip=1.0).fixed_point.step
    for u, xu in recovered.items():  # each input alone, exactly up to fixed-point rounding
        assert float((xu - x[u]).abs().max()) <= step / 2 + 1e-6


def test_man_in_the_middle_learns_nothing_from_signed_rosters() -> None:
    recovered, _, refused = _mitm_round(verify=None)
    assert refused == 8 and recovered == {}


def _to_masked(clients: list[SecAggClient], server: SecAggServer) -> None:
    for c in clients:
        server.receive_advertise(c.advertise_keys())
    rosters = server.close_advertise()
    for c in clients:
        server.receive_shares(c.share_keys(rosters[c.id]))
    bundles = server.close_shares()
    for c in clients:
        server.receive_masked(c.masked_input(bundles[c.id]))
    server.close_masked()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(3, 7), seed=st.integers(0, 1000))
def test_a_split_view_never_yields_both_shares_of_an_honest_secret(
    data: st.DataObject, n: int, seed: int
) -> None:
    """The server shows each client any survivor set it likes, collects the signatures,
    and asks each client to unmask with every signature it has on that client's set; the
    corrupt clients hand over everything they hold. For c < 2t - n all honest clients that
    reveal anything agree on one survivor set, and the server never holds t shares of both
    the self-mask seed and the mask key of any honest client."""
    t = data.draw(st.integers(n // 2 + 1, n), label="t")
    c = data.draw(st.integers(0, max(0, 2 * t - n - 1)), label="colluders")
    cfg, _, clients, server, ids = _setup(n, t, d=4, seed=seed)
    assert c <= cfg.max_colluders()
    _to_masked(clients, server)
    corrupt = set(range(n - c, n))
    honest = [u for u in range(n) if u not in corrupt]
    views: dict[int, tuple[int, ...]] = {}
    for u in honest:
        others = data.draw(st.sets(st.sampled_from(range(n))), label=f"view of {u}")
        views[u] = tuple(sorted(others | {u}))
    sigs: dict[tuple[int, ...], dict[int, bytes]] = {}
    for u in honest:
        try:
            sig = clients[u].consistency(ConsistencyCheck(u, views[u]))
        except PrivacyError:
            continue
        sigs.setdefault(views[u], {})[u] = sig.signature
    for view in list(sigs):  # corrupt clients sign every view
        for v in corrupt:
            sigs[view][v] = ids.signer(v)(consistency_bytes(cfg.session, view))
    # a corrupt client leaks both shares it holds of everyone (complete graph: all)
    b_got: dict[int, int] = {u: c for u in honest}
    s_got: dict[int, int] = {u: c for u in honest}
    answered: set[tuple[int, ...]] = set()
    for u in honest:
        if views[u] not in sigs:
            continue
        req = UnmaskRequest(u, views[u], tuple(sorted(sigs[views[u]].items())))
        try:
            resp = clients[u].unmask(req)
        except PrivacyError:
            continue
        answered.add(views[u])
        for owner, _ in resp.self_mask_shares:
            if owner in b_got:
                b_got[owner] += 1
        for owner, _ in resp.key_shares:
            if owner in s_got:
                s_got[owner] += 1
    for u in honest:
        assert not (b_got[u] >= t and s_got[u] >= t), (u, b_got[u], s_got[u], views)
    # the consistency round: every honest client that revealed shares saw the same U3
    assert len(answered) <= 1, answered


def test_client_aborts_when_the_survivor_set_changes_or_signatures_are_replayed() -> None:
    _, _, clients, server, _ = _setup(5, 3)
    _to_masked(clients, server)
    everyone = (0, 1, 2, 3, 4)
    sigs = {c.id: c.consistency(ConsistencyCheck(c.id, everyone)).signature for c in clients}
    good = tuple(sorted(sigs.items()))
    with pytest.raises(PrivacyError, match="survivor set changed"):
        clients[0].unmask(UnmaskRequest(0, (0, 1, 2, 3), good))
    swapped = ((0, sigs[1]), (1, sigs[0]), (2, sigs[2]))
    with pytest.raises(PrivacyError, match="consistency signature is invalid"):
        clients[1].unmask(UnmaskRequest(1, everyone, swapped))
    with pytest.raises(PrivacyError, match="only 2 of my share holders"):
        clients[2].unmask(UnmaskRequest(2, everyone, good[:2]))
    resp = clients[3].unmask(UnmaskRequest(3, everyone, good))
    assert len(resp.self_mask_shares) == 5 and resp.key_shares == ()


def test_signatures_are_bound_to_the_session() -> None:
    n = 3
    ids = Identities(n, 0)
    cfgs = [
        SecAggConfig(n_clients=n, threshold=2, dim=4, clip=1.0, session=s) for s in (b"r1", b"r2")
    ]
    a = SecAggClient(0, cfgs[0], torch.zeros(4), make_randbytes(b"a"), ids.signer(0), ids.verify)
    advert = a.advertise_keys()
    server = SecAggServer(cfgs[1], ids.verify)  # round 2's server sees round 1's advert
    with pytest.raises(InvalidMessage, match="not signed"):
        server.receive_advertise(advert)


def test_threshold_must_exceed_half_the_holders() -> None:
    with pytest.raises(ConfigError, match="more than half"):
        SecAggConfig(n_clients=6, threshold=3, dim=4, clip=1.0)
    assert SecAggConfig(n_clients=6, threshold=4, dim=4, clip=1.0).max_colluders() == 1
    assert SecAggConfig(n_clients=9, threshold=7, dim=4, clip=1.0).max_colluders() == 4
    plus = SecAggConfig(n_clients=20, threshold=4, dim=4, clip=1.0, degree=4, graph_seed=b"g")
    assert plus.holders() == 5 and plus.max_colluders() == 2
