"""Span verification: every cheating strategy is caught, honest servers never are."""

from __future__ import annotations

import pytest
import torch
from swarm_kit import PROMPT
from transformers import LlamaForCausalLM

from deai.swarm.adversary import Cheater, Strategy
from deai.swarm.blocks import ClientParts, Span
from deai.swarm.checks import Outcome
from deai.swarm.client import ClientConfig
from deai.swarm.errors import MissingBlocks
from deai.swarm.manifest import Manifest
from deai.swarm.sim import SimConfig, SimSwarm
from deai.swarm.verify import CanarySet, calibrate, compare, relative_ppb
from deai.swarm.wire import ActCodec

REDUNDANT = ((0, 3), (3, 6), (0, 3), (3, 6), (0, 6))  # every span held twice or more


def checked(
    tiny: LlamaForCausalLM, m: Manifest, cheaters: dict[int, Cheater], **kw: object
) -> SimSwarm:
    return SimSwarm(tiny, SimConfig(spans=REDUNDANT), cheaters=cheaters, manifest=m)


def calls_through(sw: SimSwarm, index: int) -> int:
    return sw.servers[index].calls


@pytest.mark.parametrize("strategy", list(Strategy))
def test_each_cheating_strategy_is_caught_and_goes_unpaid(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, strategy: Strategy
) -> None:
    sw = checked(tiny, tiny_manifest, {4: Cheater(strategy)})  # the one-hop (0, 6) server
    cheater = sw.servers[4].address
    c = sw.client(ClientConfig(session_check_rate=1.0))
    assert [h.owner for h in c.session(16).route] == [cheater]  # it is on the route
    c.generate(PROMPT, 6)
    assert c.checker.stats.caught == [cheater]
    ev = c.checker.evidence[0]
    assert ev.accused == cheater and ev.distance > ev.allowed
    assert ev.receipt.signer() == cheater  # its own signature convicts it
    assert cheater not in c.tally.units and c.tally.voucher(cheater) is None
    # and the client routes around it from now on
    assert cheater not in {h.owner for h in c.session(16).route}
    assert c.checker.stats.outcomes == {"caught": 1}


def test_honest_servers_pass_every_check(tiny: LlamaForCausalLM, tiny_manifest: Manifest) -> None:
    sw = checked(tiny, tiny_manifest, {})
    c = sw.client(ClientConfig(session_check_rate=1.0))
    for i in range(4):
        c.generate(torch.tensor([[2 + i, 40, 7 * i + 1]]), 10)
    assert set(c.checker.stats.outcomes) == {"passed"} and c.checker.stats.outcomes["passed"] >= 4
    assert c.checker.stats.caught == [] and c.bans.banned() == set()


def test_without_checks_a_cheater_is_never_noticed(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    """The attack succeeds on the unprotected path: the checks are what catch it."""
    sw = checked(tiny, tiny_manifest, {4: Cheater(Strategy.QUANTIZED)})
    c = sw.client(ClientConfig(session_check_rate=0.0))
    c.generate(PROMPT, 6)
    assert c.checker.stats.checks == 0 and sw.servers[4].address in c.tally.units


def test_a_lying_witness_does_not_convict_an_honest_server(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = SimSwarm(tiny, SimConfig(spans=((0, 6), (0, 6), (0, 3), (3, 6))), manifest=tiny_manifest,
                  cheaters={1: Cheater(Strategy.RANDOM)})  # fmt: skip
    honest, liar = sw.servers[0].address, sw.servers[1].address
    c = sw.client(ClientConfig(session_check_rate=1.0))
    c.reputation._score[liar] = 0.9  # generation prefers the honest one-hop server ...
    assert [h.owner for h in c.session(16).route] == [honest]
    c.generate(PROMPT, 6)  # ... and the liar is the cheapest witness
    assert c.checker.stats.outcomes == {"witness_caught": 1}
    assert c.checker.stats.caught == [liar] and not c.bans.is_banned(honest)
    assert c.bans.is_banned(liar) and c.checker.evidence[0].receipt.signer() == liar


def test_canaries_catch_a_cheater_that_no_other_server_can_check(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    sw = SimSwarm(tiny, SimConfig(spans=((0, 2), (2, 4), (4, 6))), manifest=tiny_manifest,
                  cheaters={1: Cheater(Strategy.SKIP_LAYERS)})  # fmt: skip
    c = sw.client(ClientConfig(session_check_rate=1.0))
    c.generate(PROMPT, 4)
    assert c.checker.stats.outcomes == {"unverifiable": 3}  # no second copy of any span
    parts = ClientParts(tiny)
    with torch.no_grad():
        x = Span.of(tiny, 0, 2)(parts.embed_ids(torch.tensor([[4, 8, 15, 16, 23, 42]])), 0, None)
    c.checker.canaries = CanarySet.build(Span.of(tiny, 2, 4), [x])
    route = c.session(16).route
    outcomes = [c.checker.canary(h) for h in route]
    assert outcomes == [Outcome.UNVERIFIABLE, Outcome.CAUGHT, Outcome.UNVERIFIABLE]
    assert c.checker.stats.caught == [sw.servers[1].address]
    assert c.checker.canary(route[1]) is Outcome.UNVERIFIABLE  # each canary once per server
    with pytest.raises(MissingBlocks, match=r"\[2, "):  # fail closed: nobody else has 2-3
        c.session(16)


def test_fine_tuning_calls_are_checked_with_the_codec_slack(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest
) -> None:
    for cheat, expect in ((None, []), (Cheater(Strategy.QUANTIZED), [4])):
        sw = checked(tiny, tiny_manifest, {4: cheat} if cheat else {})
        c = sw.client(ClientConfig(call_check_rate=1.0))
        x = c.parts.embed_ids(
            torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
        )
        for _ in range(4):
            c.forward_range(x, 0, 6)
        assert c.checker.stats.caught == [sw.servers[i].address for i in expect]
        assert (
            "caught" in c.checker.stats.outcomes or c.checker.stats.outcomes.get("passed", 0) >= 4
        )


def test_calibrated_tolerance_separates_honest_noise_from_every_cheat(
    tiny: LlamaForCausalLM,
) -> None:
    parts = ClientParts(tiny)
    g = torch.Generator().manual_seed(1)
    inputs = [parts.embed_ids(torch.randint(0, 256, (1, 16), generator=g)) for _ in range(2)]
    spans = [Span.of(tiny, 0, 6), Span.of(tiny, 2, 5)]
    cal = calibrate(spans, inputs, prompt_len=6, threads=(1,))  # 2 threads: the benchmark
    assert cal.pairs == 4 and cal.tol_ppb >= 8 * cal.eps_max_ppb
    assert cal.tol_ppb <= ClientConfig().tol_ppb  # the default holds for this profile
    full = spans[0]
    with torch.no_grad():
        ref = full(inputs[0], 0, None)[0]
        for s in Strategy:
            ch = Cheater(s)
            ch.run(full, inputs[0] * 0.9, 0, None)  # gives `stale` an earlier answer
            out = ch.run(full, inputs[0], 0, None)[0]
            ppb = int(relative_ppb(out, ref).max())
            assert ppb > 100 * cal.tol_ppb, (s, ppb)
            assert not compare(out, ref, cal.tol_ppb, ActCodec.FLOAT32).ok
