"""Reproduce findings 1, 2 and 7 of issue #13 on the contracts *before* the fix (not a test;
the attack tests in test_attacks.py assert the same attacks now fail). Run with the old
sources on the path:

    mkdir -p /tmp/old && git archive 4fcdd35 src/deai/ledger | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src DEAI_CACHE_DIR=/tmp/oldcache python tests/ledger/reproduce_before_13.py

Output at 4fcdd35: "finding 2: sybil seats of 16: 12", "finding 1: honest stake burned by a
4-wei job: 8.0 ETH", "finding 7: claims of an over-full root: [paid, paid, jobs: claims
exceed payouts]".
"""

from eth_account import Account
from eth_utils import keccak

from deai.ledger.chain import EmbeddedChain
from deai.ledger.client import Ledger
from deai.ledger.merkle import PayoutTree
from deai.ledger.types import LedgerConfig, Role, RoundResult, result_commitment

ETH = 10**18
keys = ["0x" + keccak(b"old" + i.to_bytes(2, "big")).hex() for i in range(20)]
addrs = [Account.from_key(k).address for k in keys]
chain = EmbeddedChain(dict.fromkeys(addrs, 1000 * ETH))
led = Ledger.deploy(chain, LedgerConfig(min_stake=ETH, withdrawal_delay=1000, job_slash=ETH // 2))
for k in keys:
    led.add_key(k)
req, honest, sybils = addrs[0], addrs[1:5], addrs[5:18]
for a in honest:
    led.register(a, 10 * ETH, "h", Role.VALIDATOR)
for a in sybils:
    led.register(a, ETH, "s", Role.VALIDATOR)
# finding 2: head-count capture
j = led.create_job(
    req,
    budget=4 * ETH,
    spec_hash=b"\1" * 32,
    rounds=1,
    committee_size=16,
    commit_period=100,
    reveal_period=100,
    claim_period=100,
)
m = led.committee(j)
print("finding 2: sybil seats of 16:", sum(x in set(sybils) for x in m))
# finding 1: 1-second windows accepted, honest members slashed for not committing
before = sum(led.node(a).stake for a in honest)
j = led.create_job(
    req,
    budget=4,
    spec_hash=b"\0" * 32,
    rounds=4,
    committee_size=16,
    commit_period=1,
    reveal_period=1,
    claim_period=1,
)
for r in range(4):
    chain.advance_time(3)
    led.finalize_round(req, j, r)
print(
    "finding 1: honest stake burned by a 4-wei job:",
    (before - sum(led.node(a).stake for a in honest)) / ETH,
    "ETH",
)
# finding 7: over-full root, first come first served
chain2 = EmbeddedChain()
led2 = Ledger.deploy(chain2, LedgerConfig(min_stake=ETH, withdrawal_delay=1000))
acc = chain2.accounts
for v in acc[1:4]:
    led2.register(v, 2 * ETH, "v", Role.VALIDATOR)
j = led2.create_job(
    acc[0],
    budget=ETH,
    spec_hash=b"\2" * 32,
    rounds=1,
    committee_size=3,
    commit_period=100,
    reveal_period=100,
    claim_period=100,
)
p = acc[7:10]
tree = PayoutTree(j, {x: ETH // 2 for x in p})
res = RoundResult(b"\7" * 32, tree.root, ETH)
salt = b"\1" * 32
for v in led2.committee(j):
    led2.commit(v, j, 0, result_commitment(j, 0, v, res, salt))
for v in led2.committee(j):
    led2.reveal(v, j, 0, res, salt)
led2.finalize_round(acc[0], j, 0)
paid = []
for x in p:
    try:
        led2.claim(x, j, x, ETH // 2, tree.proof(x))
        paid.append("paid")
    except Exception as e:
        paid.append(str(e)[-30:])
print("finding 7: claims of an over-full root:", paid)
