"""Node roles as message handlers.

A role reacts to messages and timers through a :class:`NodeContext`; it never loops over
other nodes or calls them directly. The same role objects run in the simulation
(in-memory transport, virtual clock, batched training) and in a deployed node (HTTP,
wall clock, one training request at a time): only the context differs.
"""

from deai.node.base import (
    Encoder,
    NodeContext,
    Requester,
    Role,
    gossip_weights,
    model_for,
    participants,
)
from deai.node.provider import Provider
from deai.node.validator import Validator

__all__ = [
    "Encoder",
    "NodeContext",
    "Provider",
    "Requester",
    "Role",
    "Validator",
    "gossip_weights",
    "model_for",
    "participants",
]
