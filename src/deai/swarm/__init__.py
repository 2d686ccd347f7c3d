"""deai.swarm: a large model served and fine-tuned as a pipeline of untrusted servers.

Petals' design (block servers, routing, sessions with KV caches, failure replay,
remote backward) with what Petals lacks: signed server records, a model manifest that
binds blocks to hashes, verified spans (sampled re-execution on witnesses, canaries),
signed receipts, payment by vouchers and slashing on chain (``SwarmLedger.vy``).
See docs/swarm.md.
"""

from deai.swarm.adversary import Cheater, Strategy
from deai.swarm.blocks import ClientParts, Span
from deai.swarm.client import ClientConfig, SwarmClient
from deai.swarm.errors import CheckFailed, MissingBlocks, ServerFailed, SwarmError
from deai.swarm.manifest import Manifest, ModelKind, ModelSource
from deai.swarm.records import RecordBook, ServerRecord, ServerState
from deai.swarm.server import BlockServer, ServerConfig
from deai.swarm.sim import SimConfig, SimSwarm
from deai.swarm.wire import ActCodec

__all__ = [
    "ActCodec",
    "BlockServer",
    "Cheater",
    "CheckFailed",
    "ClientConfig",
    "ClientParts",
    "Manifest",
    "MissingBlocks",
    "ModelKind",
    "ModelSource",
    "RecordBook",
    "ServerConfig",
    "ServerFailed",
    "ServerRecord",
    "ServerState",
    "SimConfig",
    "SimSwarm",
    "Span",
    "Strategy",
    "SwarmClient",
    "SwarmError",
]
