"""Generation sessions in simulation: greedy equality, failure replay, server-side rules."""

from __future__ import annotations

import pytest
import torch
from swarm_kit import PROMPT
from transformers import LlamaForCausalLM

from deai.swarm.client import ClientConfig
from deai.swarm.errors import SwarmError
from deai.swarm.manifest import Manifest
from deai.swarm.sim import SimConfig, SimSwarm
from deai.swarm.wire import ActCodec, encode_act, pack, unpack


def swarm(
    tiny: LlamaForCausalLM, m: Manifest, spans: tuple[tuple[int, int], ...], **kw: object
) -> SimSwarm:
    return SimSwarm(tiny, SimConfig(spans=spans, **kw), manifest=m)  # type: ignore[arg-type]


def test_greedy_generation_through_three_servers_matches_local(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, tiny_reference: torch.Tensor
) -> None:
    sw = swarm(tiny, tiny_manifest, ((0, 2), (2, 4), (4, 6)))
    c = sw.client()
    out = c.generate(PROMPT, 32)
    assert torch.equal(out, tiny_reference)
    assert len({o for o in c.tally.units}) == 3
    # each server answered 5 + 31 positions x 2 blocks (the last token needs no step)
    assert all(u == 36 * 2 for u in c.tally.units.values())


def test_a_server_killed_mid_generation_changes_nothing(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, tiny_reference: torch.Tensor
) -> None:
    sw = swarm(tiny, tiny_manifest, ((0, 3), (3, 6), (3, 5), (5, 6), (0, 6)))
    c = sw.client(ClientConfig(call_timeout_s=5.0))
    with c.session(40) as probe:
        first = probe.route
    assert [(h.start, h.end) for h in first] == [(0, 6)]
    victim = first[0]

    def kill(i: int, token: int) -> None:
        if i == 12:
            sw.transport.kill(victim.url)

    out = c.generate(PROMPT, 32, on_token=kill)
    assert torch.equal(out, tiny_reference)
    assert c.recoveries == 1
    assert [(o, why) for _, o, why in c.bans.log] == [(victim.owner, "unreachable")]


def test_replay_runs_at_the_true_positions(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, tiny_reference: torch.Tensor
) -> None:
    """Petals #587: the replayed session restarted at position 0. Here the replacement
    receives the whole history at position 0 and every later step at its true position,
    and a server refuses any step whose position is not its session's length."""
    sw = swarm(tiny, tiny_manifest, ((0, 6), (0, 6)))
    c = sw.client(ClientConfig(call_timeout_s=5.0))
    with c.session(40) as s:
        s.step(c.parts.embed_ids(PROMPT))
        for _ in range(3):
            s.step(c.parts.embed_ids(torch.tensor([[7]])))
        old = s.hops[0]
        sw.transport.kill(old.hop.url)
        s.step(c.parts.embed_ids(torch.tensor([[9]])))
        new = s.hops[0]
        assert new.hop.owner != old.hop.owner
        assert [c_.receipt.first_position for c_ in new.calls] == [0, 8]
        assert [c_.receipt.n_rows for c_ in new.calls] == [8, 1]
        server = next(x for x in sw.servers if x.address == new.hop.owner)
        assert next(iter(server.sessions.values())).length == 9
    # a step at a wrong position is refused, not silently computed
    srv = sw.servers[1] if sw.servers[0].config.url == old.hop.url else sw.servers[0]
    h = encode_act("hidden", torch.zeros(1, 1, 64), ActCodec.FLOAT32)
    sid = "0x" + "ab" * 32
    base = {"session": sid, "start": 0, "end": 6, "codec": 0, "max_length": 16}
    meta, _ = unpack(srv.handle(c.address, "step", pack({**base, "position": 3}, h)))
    assert meta["error"] == "unknown_session"
    unpack(srv.handle(c.address, "step", pack({**base, "position": 0}, h)))
    meta, _ = unpack(srv.handle(c.address, "step", pack({**base, "position": 5}, h)))
    assert meta["error"] == "position"
    # another client cannot step into this client's session
    meta, _ = unpack(srv.handle(sw.servers[0].address, "step", pack({**base, "position": 1}, h)))
    assert meta["error"] == "unknown_session"


def test_sessions_time_out_and_the_client_replays(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, tiny_reference: torch.Tensor
) -> None:
    sw = swarm(tiny, tiny_manifest, ((0, 6),))
    c = sw.client(ClientConfig(session_timeout_s=30.0, ban_base_s=0.001))

    def idle(i: int, token: int) -> None:
        if i == 5:
            sw.clock.advance(31.0)  # the server frees the session's cache

    out = c.generate(PROMPT, 32, on_token=idle)
    assert torch.equal(out, tiny_reference)
    assert [code for _, _, code in c.failures] == ["unknown_session"]
    assert sw.servers[0].reserved == 0  # closed sessions release their cache room


def test_declared_lengths_and_cache_room_are_enforced(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = swarm(tiny, tiny_manifest, ((0, 6),))
    srv = sw.servers[0]
    h = encode_act("hidden", torch.zeros(1, 4, 64), ActCodec.FLOAT32)
    base = {"start": 0, "end": 6, "codec": 0, "position": 0}

    def ask(**kw: object) -> str:
        meta, _ = unpack(srv.handle(sw.transport.client_address, "step", pack({**base, **kw}, h)))
        return str(meta.get("error", "ok"))

    assert ask(session="0x" + "01" * 32, max_length=2) == "too_long"
    assert ask(session="0x" + "02" * 32, max_length=10**9) == "bad_max_length"
    assert ask(session="0x" + "03" * 32, max_length=8, timeout_s=10**6) == "bad_timeout"
    srv.reserved = srv.config.cache_token_blocks - 10
    assert ask(session="0x" + "04" * 32, max_length=8) == "cache_full"
    assert ask(session="short", max_length=8) == "malformed"
    assert ask(session="0x" + "05" * 32, max_length=8, start=0, end=7) == "wrong_span"


def test_a_bad_receipt_is_a_failure_never_accepted(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, tiny_reference: torch.Tensor
) -> None:
    sw = swarm(tiny, tiny_manifest, ((0, 6), (0, 6)))
    c = sw.client()
    liar = c.session(40).route[0]
    real = c.transport.call

    def tamper(owner: str, url: str, kind: str, body: bytes, timeout_s: float) -> bytes:
        answer = real(owner, url, kind, body, timeout_s)
        if url != liar.url or kind != "step":
            return answer
        meta, tensors = unpack(answer)
        meta["receipt"]["n_rows"] = 0  # claims no work: the signature no longer matches
        return pack(meta, tensors)

    c.transport.call = tamper  # type: ignore[method-assign]
    out = c.generate(PROMPT, 32)
    assert torch.equal(out, tiny_reference)
    assert c.failures[0][1:] == (liar.owner, "bad_receipt")
    assert liar.owner not in c.tally.units  # nothing is owed for unreceipted work


def test_a_client_that_does_not_pay_is_cut_off_after_the_credit_window(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = SimSwarm(tiny, SimConfig(spans=((0, 6),), price_wei=1000), manifest=tiny_manifest)
    srv = sw.servers[0]
    srv.config = type(srv.config)(**{**srv.config.__dict__, "credit_wei": 100_000})
    c = sw.client()
    c.tally.voucher = lambda server: None  # type: ignore[method-assign]  # never pays
    with pytest.raises(SwarmError):
        for _ in range(3):
            c.generate(PROMPT, 8)
    assert "payment_required" in {code for _, _, code in c.failures}
    # unpaid work stays within the credit window plus the one call that crossed it
    assert srv.served_units[c.address] * 1000 <= 100_000 + 12 * 6 * 1000
    # a paying client is served; its vouchers cover what it was told it owes
    c2 = sw.client(index=1)
    for _ in range(3):
        c2.generate(PROMPT, 8)
    assert c2.failures == []
    c2.settle()
    assert srv.vouchers[c2.address].cumulative == c2.tally.owed(srv.address) == 3 * 12 * 6 * 1000
