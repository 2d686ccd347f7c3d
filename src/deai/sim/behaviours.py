"""Names a scenario may give a provider group's ``behaviour``, and how to build them."""

from __future__ import annotations

from deai.node.faults import Fault, FaultyBehaviour
from deai.node.hooks import Behaviour, Honest


def behaviour_names() -> list[str]:
    return ["honest", *(str(f) for f in Fault)]


def build_behaviour(name: str, seed: int) -> Behaviour:
    if name == "honest":
        return Honest()
    return FaultyBehaviour(Fault(name))
