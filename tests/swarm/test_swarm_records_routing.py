"""Signed records (only the owner writes its record) and routing."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from eth_account import Account

from deai.swarm.errors import MissingBlocks
from deai.swarm.manifest import Manifest
from deai.swarm.records import RecordBook, ServerRecord, ServerState, block_proofs
from deai.swarm.routing import (
    BanList,
    block_throughputs,
    choose_blocks,
    latency_route,
    rebalance_target,
    throughput_route,
)

KEYS = [Account.create(f"swarm-test-{i}") for i in range(6)]


def record(m: Manifest, i: int, start: int, end: int, **kw: object) -> ServerRecord:
    base = ServerRecord(
        owner=KEYS[i].address, url=f"sim://{i}", model_root=m.root, start=start, end=end,
        throughput=100.0, cache_tokens_left=10_000, state=ServerState.ONLINE,
        profile="p", seq=1, expires_at=1060.0,
        proofs=() if "proofs" in kw or end > m.n_blocks else block_proofs(m, start, end),
    )  # fmt: skip
    return replace(base, **kw).signed(KEYS[i].key)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book(m: Manifest, clock: Clock, allowed: set[str] | None = None) -> RecordBook:
    def identity(owner: str) -> str | None:
        return None if allowed is None or owner in allowed else "not staked"

    return RecordBook(m, identity, ttl_s=60.0, clock=clock)


def test_only_the_owner_can_write_its_record(tiny_manifest: Manifest) -> None:
    clock = Clock()
    b = book(tiny_manifest, clock)
    assert b.accept(record(tiny_manifest, 0, 0, 3))
    # attack: server 1 announces a record in server 0's name (Petals lets any peer do this)
    forged = replace(record(tiny_manifest, 0, 3, 6, seq=2), signature="").signed(KEYS[1].key)
    assert not b.accept(forged)
    assert "signed by someone else" in b.rejected[-1][1]
    assert b.get(KEYS[0].address).start == 0  # type: ignore[union-attr]
    # tampering with a signed field breaks the signature
    assert not b.accept(replace(record(tiny_manifest, 0, 0, 3, seq=3), throughput=1e9))


def test_replayed_expired_unstaked_and_unproven_records_are_refused(
    tiny_manifest: Manifest,
) -> None:
    m = tiny_manifest
    clock = Clock()
    b = book(m, clock, allowed={KEYS[0].address})
    assert b.accept(record(m, 0, 0, 3, seq=5))
    assert not b.accept(record(m, 0, 3, 6, seq=4))  # an old record replayed
    assert not b.accept(record(m, 1, 0, 3))  # not staked
    assert not b.accept(record(m, 0, 0, 3, seq=6, expires_at=999.0))  # expired
    assert not b.accept(record(m, 0, 0, 3, seq=7, expires_at=5000.0))  # beyond the TTL
    assert not b.accept(record(m, 0, 0, 3, seq=8, model_root="0x" + "00" * 32))
    assert not b.accept(record(m, 0, 0, 3, seq=9, proofs=block_proofs(m, 1, 4)))  # wrong proofs
    assert not b.accept(record(m, 0, 4, 9, seq=10))  # beyond the model
    reasons = " ".join(r for _, r in b.rejected)
    for word in ("seq", "not staked", "expired", "model root", "proof", "span"):
        assert word in reasons
    clock.now = 1061.0
    assert b.live() == []  # the accepted record expired


def test_latency_route_takes_few_fast_hops_and_skips_banned(tiny_manifest: Manifest) -> None:
    m = tiny_manifest
    recs = [
        record(m, 0, 0, 3),
        record(m, 1, 3, 6),
        record(m, 2, 0, 6),
        record(m, 3, 0, 6, throughput=1.0),
    ]
    rtt = {r.owner: 0.05 for r in recs}.__getitem__
    hops = latency_route(recs, 0, 6, rtt=rtt, reputation=lambda o: 1.0)
    assert [h.owner for h in hops] == [KEYS[2].address]  # one hop beats two
    hops = latency_route(recs, 0, 6, rtt=rtt, reputation=lambda o: 1.0, exclude={KEYS[2].address})
    assert [h.owner for h in hops] == [KEYS[0].address, KEYS[1].address]  # fast pair over slow one
    # a low reputation costs like a slow server
    rep = {KEYS[2].address: 0.01}.get
    hops = latency_route(recs, 0, 6, rtt=rtt, reputation=lambda o: rep(o, 1.0))  # type: ignore[arg-type]
    assert KEYS[2].address not in {h.owner for h in hops}
    with pytest.raises(MissingBlocks, match=r"\[3, 6\)"):
        latency_route(recs[:1], 0, 6, rtt=rtt, reputation=lambda o: 1.0)
    # not enough cache room for the declared length
    full = [replace(r, cache_tokens_left=10) for r in recs]
    with pytest.raises(MissingBlocks):
        latency_route(full, 0, 6, rtt=rtt, reputation=lambda o: 1.0, max_length=100)
    offline = [replace(r, state=ServerState.OFFLINE) for r in recs]
    with pytest.raises(MissingBlocks):
        latency_route(offline, 0, 6, rtt=rtt, reputation=lambda o: 1.0)


def test_throughput_route_spreads_load_by_capacity(tiny_manifest: Manifest) -> None:
    m = tiny_manifest
    recs = [record(m, 0, 0, 6, throughput=300.0), record(m, 1, 0, 6, throughput=100.0)]
    rng = random.Random(0)
    picks = [
        throughput_route(recs, 0, 6, rng=rng, reputation=lambda o: 1.0)[0].owner
        for _ in range(2000)
    ]
    share = picks.count(KEYS[0].address) / len(picks)
    assert 0.72 < share < 0.78  # 300 / 400


def test_ban_list_backs_off_exponentially_and_forgives_slowly() -> None:
    clock = Clock()
    bans = BanList(clock, base_s=1.0, max_s=8.0)
    lengths = [bans.ban("a", "timeout") for _ in range(5)]
    assert lengths == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert bans.is_banned("a")
    clock.now += 8.1
    assert not bans.is_banned("a")
    bans.success("a")
    assert bans.ban("a", "again") == 8.0  # one success takes one strike off, not all


def test_servers_pick_the_weakest_window_and_move_only_past_the_hysteresis(
    tiny_manifest: Manifest,
) -> None:
    m = tiny_manifest
    assert choose_blocks([5.0, 5.0, 0.0, 0.0, 5.0, 5.0], 2) == 2
    assert choose_blocks([1.0, 2.0, 3.0], 1) == 0
    a, b, c = (record(m, i, 0, 3, throughput=100.0) for i in range(3))
    d = record(m, 3, 3, 6, throughput=100.0)
    # three servers double up on blocks 0-2 while 3-5 have one: moving doubles the bottleneck
    assert rebalance_target([a, b, c, d], 6, c, balance_quality=0.75) == 3
    assert block_throughputs([a, b, c, d], 6) == [300.0] * 3 + [100.0] * 3
    # a move that would raise the bottleneck only 10% stays inside the band (Petals #389)
    big = record(m, 0, 0, 6, throughput=100.0)
    thin = record(m, 1, 2, 6, throughput=10.0)
    mover = record(m, 2, 2, 4, throughput=50.0)
    assert rebalance_target([big, thin, mover], 6, mover, balance_quality=0.75) is None
    assert rebalance_target([big, thin, mover], 6, mover, balance_quality=0.95) == 0
