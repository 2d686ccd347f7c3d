"""deai: decentralized AI where every piece of work is done by someone untrusted,
checked, and paid for by its measured worth.

The Python API (see docs/api.md)::

    import deai
    result = deai.simulate(deai.JobSpec(rounds=10), deai.SimulationSection())

Names are imported lazily, so ``import deai`` stays cheap until one is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the job spec
    "JobSpec": "deai.job.spec",
    "DataSchema": "deai.job.spec",
    "ModelSpec": "deai.job.spec",
    "AlgorithmSpec": "deai.job.spec",
    "AggregationSpec": "deai.job.spec",
    "CodecSpec": "deai.job.spec",
    "PrivacySpec": "deai.job.spec",
    "ContributionSpec": "deai.job.spec",
    "SettlementSpec": "deai.job.spec",
    "UpdatePolicy": "deai.job.spec",
    "Parties": "deai.job.spec",
    # the simulated world
    "Scenario": "deai.sim.scenario",
    "SimulationSection": "deai.sim.scenario",
    "DataSource": "deai.sim.scenario",
    "NetworkSection": "deai.sim.scenario",
    "NodeGroup": "deai.sim.scenario",
    # running
    "simulate": "deai.api",
    "check": "deai.api",
    "load": "deai.api",
    "submit": "deai.api",
    "SimulationResult": "deai.api",
    "RoundRecord": "deai.api",
    "Payout": "deai.api",
    # data
    "Dataset": "deai.learning.data",
    "from_arrays": "deai.learning.data",
    "from_labels": "deai.learning.data",
    "from_torch": "deai.learning.data",
    # registries
    "datasets": "deai.registry",
    "models": "deai.registry",
    "aggregators": "deai.registry",
    "codecs": "deai.registry",
    # errors
    "DeaiError": "deai.errors",
    "ConfigError": "deai.errors",
}

__all__ = [
    "AggregationSpec",
    "AlgorithmSpec",
    "CodecSpec",
    "ConfigError",
    "ContributionSpec",
    "DataSchema",
    "DataSource",
    "Dataset",
    "DeaiError",
    "JobSpec",
    "ModelSpec",
    "NetworkSection",
    "NodeGroup",
    "Parties",
    "Payout",
    "PrivacySpec",
    "RoundRecord",
    "Scenario",
    "SettlementSpec",
    "SimulationResult",
    "SimulationSection",
    "UpdatePolicy",
    "__version__",
    "aggregators",
    "check",
    "codecs",
    "datasets",
    "from_arrays",
    "from_labels",
    "from_torch",
    "load",
    "models",
    "simulate",
    "submit",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deai' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from deai.api import Payout, RoundRecord, SimulationResult, check, load, simulate, submit
    from deai.errors import ConfigError, DeaiError
    from deai.job.spec import (
        AggregationSpec,
        AlgorithmSpec,
        CodecSpec,
        ContributionSpec,
        DataSchema,
        JobSpec,
        ModelSpec,
        Parties,
        PrivacySpec,
        SettlementSpec,
        UpdatePolicy,
    )
    from deai.learning.data import Dataset, from_arrays, from_labels, from_torch
    from deai.registry import aggregators, codecs, datasets, models
    from deai.sim.scenario import DataSource, NetworkSection, NodeGroup, Scenario, SimulationSection
