"""deai.ledger: the Vyper contracts (Registry, Jobs, Tasks), chain backends (embedded
py-evm, any JSON-RPC URL, a local anvil) and the typed :class:`Ledger` client.

See docs/ledger.md for the state machines, deadlines and where slashed funds go.
"""

from deai.ledger.chain import Chain, EmbeddedChain, RpcChain
from deai.ledger.client import Ledger
from deai.ledger.committee import draw_committee, round_seed
from deai.ledger.errors import AnvilNotFound, ChainUnavailable, Reverted
from deai.ledger.merkle import MerkleTree, PayoutTree, payout_leaf
from deai.ledger.types import (
    BURN_ADDRESS,
    Deployment,
    Event,
    JobState,
    JobView,
    LedgerConfig,
    NodeView,
    Role,
    RoundResult,
    RoundView,
    TaskState,
    TaskView,
    result_commitment,
    task_commitment,
)

__all__ = [
    "BURN_ADDRESS",
    "AnvilNotFound",
    "Chain",
    "ChainUnavailable",
    "Deployment",
    "EmbeddedChain",
    "Event",
    "JobState",
    "JobView",
    "Ledger",
    "LedgerConfig",
    "MerkleTree",
    "NodeView",
    "PayoutTree",
    "Reverted",
    "Role",
    "RoundResult",
    "RoundView",
    "RpcChain",
    "TaskState",
    "TaskView",
    "draw_committee",
    "payout_leaf",
    "result_commitment",
    "round_seed",
    "task_commitment",
]
