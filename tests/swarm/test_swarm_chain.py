"""The swarm ledger on a real EVM: slashing by witnesses, vouchers, conservation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch
from eth_account import Account
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from swarm_kit import PROMPT
from transformers import LlamaForCausalLM

from deai.ledger.chain import EmbeddedChain
from deai.ledger.errors import Reverted
from deai.swarm.adversary import Cheater, Strategy
from deai.swarm.blocks import load_span
from deai.swarm.chain import ChainIdentity, DisputeRun, SwarmLedger, SwarmLedgerConfig, row_bytes
from deai.swarm.checks import Evidence
from deai.swarm.client import ClientConfig
from deai.swarm.manifest import Manifest
from deai.swarm.receipts import Voucher
from deai.swarm.server import default_profile
from deai.swarm.sim import SimConfig, SimSwarm, sim_key
from deai.swarm.verify import compare
from deai.swarm.wire import ActCodec, fixed_rows

SPANS = ((0, 3), (3, 6), (0, 3), (3, 6), (0, 6), (2, 6))  # one one-hop server: index 4
CFG = SwarmLedgerConfig()
SEED = 7


def keys() -> dict[str, bytes]:
    k = {f"s{i}": sim_key(SEED, "server", i) for i in range(len(SPANS))}
    return k | {"c": sim_key(SEED, "client", 0), "c1": sim_key(SEED, "client", 1)}


def addr(name: str) -> str:
    return str(Account.from_key(keys()[name]).address)


@pytest.fixture(scope="module")
def ledger(tiny_manifest: Manifest) -> SwarmLedger:
    chain = EmbeddedChain(funded={addr(n): 10**21 for n in keys()})
    led = SwarmLedger.deploy(chain, CFG)
    for k in keys().values():
        led.add_key(k)
    for i in range(len(SPANS)):
        led.register(addr(f"s{i}"), tiny_manifest.root, default_profile(), CFG.min_stake)
    led.deposit(addr("c"), 10**18)
    return led


@pytest.fixture
def fresh(ledger: SwarmLedger) -> Iterator[SwarmLedger]:
    snap = ledger.chain.snapshot()
    yield ledger
    ledger.chain.revert(snap)


def conserved(led: SwarmLedger) -> None:
    t = led.totals()
    assert t["balance"] == t["stake"] + t["deposits"] + t["bonds"] + t["owed"], t


def swarm(
    tiny: LlamaForCausalLM, m: Manifest, led: SwarmLedger, cheaters: dict[int, Cheater]
) -> SimSwarm:
    identity = ChainIdentity(led, m.root, default_profile())
    cfg = SimConfig(spans=SPANS, seed=SEED, ledger=led.address, price_wei=10**9)
    return SimSwarm(tiny, cfg, cheaters=cheaters, identity=identity, manifest=m)


def dispute_run(led: SwarmLedger, sw: SimSwarm, m: Manifest) -> DisputeRun:
    servers = {s.address: s for s in sw.servers}
    return DisputeRun(
        led,
        addr("c"),
        witness_span=lambda w, a, b: load_span(servers[w].model, m, a, b),
        salts=lambda w: keccak(b"salt" + bytes.fromhex(w[2:])),
    )


def test_a_cheating_server_is_caught_and_slashed_on_chain(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, fresh: SwarmLedger
) -> None:
    led = fresh
    sw = swarm(tiny, tiny_manifest, led, {4: Cheater(Strategy.QUANTIZED)})
    cheater = sw.servers[4].address
    c = sw.client(ClientConfig(session_check_rate=1.0, ledger=led.address))
    assert cheater in {h.owner for h in c.session(16).route}
    run = dispute_run(led, sw, tiny_manifest)
    verdicts: list[str] = []
    c.checker.on_caught = lambda ev: verdicts.append(run.run(ev)[1])
    stake = led.stake_of(cheater)
    c.generate(PROMPT, 6)
    assert verdicts == ["guilty"]
    assert led.stake_of(cheater) == stake - CFG.slash
    witnesses = [
        w for w in run.log[0].split("witnesses ")[1].strip("[]").replace("'", "").split(", ")
    ]
    assert cheater not in witnesses and all(led.owed(w) == CFG.witness_fee for w in witnesses)
    assert led.owed(addr("c")) == led.dispute_bond()  # the client is made whole
    assert (
        not led.is_server(cheater, tiny_manifest.root, default_profile())
        or led.stake_of(cheater) >= CFG.min_stake
    )
    conserved(led)
    # honest servers are paid exactly their confirmed work; the cheater nothing
    c.settle()
    for s in sw.servers:
        got = led.redeem_batch(s.address, s.best_vouchers())
        assert got == (0 if s.address == cheater else c.tally.owed(s.address))
    conserved(led)


def test_an_honest_server_cannot_be_framed(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, fresh: SwarmLedger
) -> None:
    """Attack: a client disputes an honest row (the witnesses recompute it and agree), or
    hands over a fake row (its hash is not the signed one). Neither slashes; the first
    costs the client its bond, which goes to the accused."""
    led = fresh
    sw = swarm(tiny, tiny_manifest, led, {})
    caught: list[Evidence] = []
    c = sw.client(
        ClientConfig(session_check_rate=1.0, ledger=led.address, tol_ppb=1)
    )  # a paranoid client
    c.checker.on_caught = caught.append
    c.generate(PROMPT, 6)
    if not caught:  # honest noise may be zero: make the client accuse anyway
        c2 = sw.client(ClientConfig(session_check_rate=1.0, ledger=led.address, tol_ppb=0))
        c2.checker.on_caught = caught.append
        c2.generate(PROMPT, 6)
    ev = caught[0]
    honest = ev.accused
    stake = led.stake_of(honest)
    run = dispute_run(led, sw, tiny_manifest)
    _, verdict = run.run(ev)
    assert verdict == "cleared"
    assert led.stake_of(honest) == stake
    assert led.owed(honest) == led.dispute_bond() - 2 * CFG.witness_fee
    # a fake row for the accused: finalize cannot use it, nobody is slashed
    fake = replace(ev, row=ev.row + 1.0)
    _, verdict = run.run(fake)
    assert verdict == "inconclusive" and led.stake_of(honest) == stake
    conserved(led)


def test_forged_receipts_and_claims_are_refused(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, fresh: SwarmLedger
) -> None:
    led = fresh
    sw = swarm(tiny, tiny_manifest, led, {4: Cheater(Strategy.RANDOM)})
    c = sw.client(ClientConfig(session_check_rate=1.0, ledger=led.address))
    c.generate(PROMPT, 4)
    ev = c.checker.evidence[0]
    other = sw.servers[0].address
    with pytest.raises(Reverted, match="not signed by accused"):
        led.open_dispute(addr("c"), replace(ev, receipt=replace(ev.receipt, server=other)))
    with pytest.raises(Reverted, match="not signed by accused"):
        led.open_dispute(
            addr("c"), replace(ev, receipt=replace(ev.receipt, n_rows=ev.receipt.n_rows + 1))
        )
    with pytest.raises(Reverted, match="claim not in receipt"):
        led.open_dispute(addr("c"), replace(ev, claim=replace(ev.claim, out_hash=b"\x01" * 32)))
    conserved(led)


def test_a_witness_that_does_not_reveal_is_slashed(
    tiny: LlamaForCausalLM, tiny_manifest: Manifest, fresh: SwarmLedger
) -> None:
    led = fresh
    sw = swarm(tiny, tiny_manifest, led, {4: Cheater(Strategy.IDENTITY)})
    c = sw.client(ClientConfig(session_check_rate=1.0, ledger=led.address))
    c.generate(PROMPT, 4)
    ev = c.checker.evidence[0]
    did, ws = led.open_dispute(addr("c"), ev)
    stakes = [led.stake_of(w) for w in ws]
    servers = {s.address: s for s in sw.servers}
    row = row_bytes(
        load_span(servers[ws[0]].model, tiny_manifest, ev.receipt.start, ev.receipt.end)(
            ev.history, 0, None
        )[0, -1]
    )
    salt = b"\x02" * 32
    led.commit(ws[0], did, row, salt)
    with pytest.raises(Reverted, match="still committing"):
        led.reveal(ws[0], did, row, salt)
    led.chain.advance_time(CFG.commit_period + 1)
    with pytest.raises(Reverted, match="does not match"):
        led.reveal(ws[0], did, row, b"\x03" * 32)
    led.reveal(ws[0], did, row, salt)
    with pytest.raises(Reverted, match="too early"):
        led.finalize(addr("c"), did, row_bytes(ev.row), row, b"")
    led.chain.advance_time(CFG.reveal_period + 1)
    assert led.finalize(addr("c"), did, row_bytes(ev.row), row, b"") == "inconclusive"
    assert led.stake_of(ws[1]) == stakes[1] - CFG.witness_slash  # silent witness
    assert led.stake_of(ws[0]) == stakes[0] and led.owed(ws[0]) == CFG.witness_fee
    assert led.stake_of(ev.accused) == CFG.min_stake  # no verdict, no slash
    conserved(led)


def test_vouchers_pay_cumulative_amounts_once_and_only_to_their_server(fresh: SwarmLedger) -> None:
    led = fresh
    client, s0, s1 = addr("c"), addr("s0"), addr("s1")

    def voucher(server: str, wei: int, key: bytes = keys()["c"]) -> Voucher:
        return Voucher(led.address, client, server, wei).signed(key)

    assert led.redeem_batch(s0, [voucher(s0, 1000)]) == 1000
    assert led.redeem_batch(s0, [voucher(s0, 1000)]) == 0  # a replay pays nothing
    assert led.redeem_batch(s0, [voucher(s0, 2500)]) == 1500  # only the difference
    with pytest.raises(Reverted, match="not signed by client"):
        led.redeem_batch(s1, [voucher(s0, 5000)])  # s0's voucher is not s1's
    with pytest.raises(Reverted, match="not signed by client"):
        led.redeem_batch(s1, [voucher(s1, 5000, key=keys()["c1"])])
    assert led.redeem_batch(s1, [voucher(s1, 10**19)]) == 10**18 - 2500  # capped by the deposit
    assert led.paid(client, s0) == 2500 and led.balance_of(client) == 0
    with pytest.raises(Reverted, match="deposit locked"):
        led._send(client, led.contract.functions.withdraw_deposit(), 0, "withdraw_deposit")
    conserved(led)


@settings(max_examples=12, deadline=None)
@given(
    st.integers(0, 2**16),
    st.floats(1e-7, 1e-2),
    st.sampled_from([ActCodec.FLOAT32, ActCodec.INT8_BLOCKWISE]),
)
def test_the_contract_compares_rows_exactly_as_the_client(
    ledger: SwarmLedger, seed: int, noise: float, codec: ActCodec
) -> None:
    g = np.random.default_rng(seed)
    ref = torch.from_numpy(g.standard_normal(64) * 30).float()
    claimed = ref + torch.from_numpy(g.standard_normal(64) * noise * 30).float()
    py = compare(claimed.reshape(1, -1), ref.reshape(1, -1), CFG.tol_ppb, codec).ok
    on_chain = ledger.rows_close(row_bytes(claimed), row_bytes(ref), int(codec))
    assert py == on_chain
    assert fixed_rows(ref.reshape(1, -1)).dtype == np.dtype(">i4")
