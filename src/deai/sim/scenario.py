"""Scenario files: a job spec plus a ``[simulation]`` section.

A scenario is exactly a :class:`~deai.job.spec.JobSpec` (the same TOML a requester submits
to a real network) with one more table, ``[simulation]``: where the data comes from and
how it is split, the simulated nodes and their behaviours, the network, and the
simulator's master seed for per-node secrets. ``Scenario.job`` is the spec without it.

:func:`load_scenario` turns any mistake into one :class:`ConfigError` whose message names
the field, the bad value and what is allowed. Whatever else is knowable from the file
without running it (the data's classes against an attack's, a rule's minimum rows, the
model's size) is checked by :func:`deai.sim.runner.plan`, which ``deai check`` runs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deai.errors import ConfigError
from deai.job.errors import read_toml, validate
from deai.job.spec import JobSpec
from deai.job.types import Float, Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Seed

__all__ = ["DataSource", "NetworkSection", "NodeGroup", "Role", "Scenario", "SimulationSection"]
from deai.job.data import DataSource

MAX_SIM_NODES = 1_000_000  # a sanity bound; the real cap is the run's memory estimate
NO_SECAGG = "no_secagg"  # a provider fault: the node runs no SecAgg client (it must refuse)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Role(StrEnum):
    PROVIDER = "provider"
    VALIDATOR = "validator"


class NetworkSection(_Strict):
    bandwidth_mbps: tuple[PositiveFloat, PositiveFloat] = (10.0, 100.0)  # [low, high]
    latency_ms: tuple[NonNegativeFloat, NonNegativeFloat] = (10.0, 50.0)  # [low, high]
    samples_per_s: PositiveFloat = 2000.0
    dropout: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    straggler_fraction: Fraction = 0.0
    straggler_slowdown: Annotated[Float, Field(ge=1)] = 4.0

    @model_validator(mode="after")
    def _ranges(self) -> NetworkSection:
        for name in ("bandwidth_mbps", "latency_ms"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got ({lo}, {hi})")
        return self


class NodeGroup(_Strict):
    role: Role
    count: Annotated[PositiveInt, Field(le=MAX_SIM_NODES)] = 1
    behaviour: str = "honest"  # providers: "honest", a fault, or "no_secagg"; validators:
    # "honest" or "liar"
    attack: str | None = None  # providers: an attack from deai.registry.attacks
    attack_params: dict[str, Any] = {}  # overrides of the attack's defaults
    sybil: bool = False  # the group is ONE attacker with `count` identities sending clones
    jitter: NonNegativeFloat = 0.0  # noise on each Sybil clone
    stake_eth: PositiveFloat | None = None  # validators: each one's stake on the embedded
    # chain (None: simulation.stake_eth)

    @model_validator(mode="after")
    def _behaviour(self) -> NodeGroup:
        from deai.node.faults import Fault
        from deai.registry import attacks

        faults = ["honest", *(f.value for f in Fault), NO_SECAGG]
        if self.role is Role.PROVIDER and self.behaviour not in faults:
            raise ValueError(f"behaviour: got {self.behaviour!r}; allowed: {', '.join(faults)}")
        if self.role is Role.VALIDATOR and self.behaviour not in ("honest", "liar"):
            raise ValueError(f"behaviour: got {self.behaviour!r}; allowed: honest, liar")
        if self.role is Role.VALIDATOR and self.attack is not None:
            raise ValueError("attack: only providers take an attack")
        if self.role is Role.PROVIDER and self.stake_eth is not None:
            raise ValueError("stake_eth: only validators stake on the chain")
        if self.attack is not None:
            if self.behaviour != "honest":
                raise ValueError("a group takes either a fault behaviour or an attack, not both")
            entry = attacks.get(self.attack)  # unknown names list the allowed ones
            if entry.builtin:
                entry.factory(**self.attack_params)  # the attack's own parameter checks
        elif self.attack_params or self.sybil:
            raise ValueError("attack_params and sybil need an attack")
        return self


class SimulationSection(_Strict):
    """The simulated world around a job: data, nodes, network, secrets."""

    data: DataSource = DataSource()
    network: NetworkSection = NetworkSection()
    nodes: list[NodeGroup] = Field(
        default_factory=lambda: [
            NodeGroup(role=Role.PROVIDER, count=10),
            NodeGroup(role=Role.VALIDATOR, count=1),
        ],
        min_length=1,
    )
    master_seed: Seed | Literal["os"] = 0  # the simulator's secret: per-node DP noise,
    # SecAgg keys, salts. Not part of the job spec, never seen by any role; "os": fresh
    stake_eth: PositiveFloat = 5.0  # each validator's stake on the embedded chain
    # cross-device: each round draws `cohort` providers from the population, and a
    # provider is built when first drawn (deai.sim.population); None: all of them, built
    # at the start
    cohort: PositiveInt | None = None
    memory_gb: PositiveFloat = 8.0  # the memory the run may plan for (see memory_estimate)

    @model_validator(mode="after")
    def _roles(self) -> SimulationSection:
        if self.count(Role.PROVIDER) < 1:
            raise ValueError("nodes: at least one provider group is required")
        if self.count(Role.VALIDATOR) < 1:
            raise ValueError("nodes: at least one validator group is required")
        total = self.count(Role.PROVIDER) + self.count(Role.VALIDATOR)
        if total > MAX_SIM_NODES:
            raise ValueError(f"nodes: {total:,} nodes in all; the simulator runs {MAX_SIM_NODES:,}")
        return self

    def count(self, role: Role) -> int:
        return sum(g.count for g in self.nodes if g.role is role)


class Scenario(JobSpec):
    """A job spec plus the simulated world it runs in."""

    simulation: SimulationSection = SimulationSection()

    @property
    def job(self) -> JobSpec:
        data = self.model_dump(mode="json", exclude={"simulation"})
        return validate(JobSpec, data, self.name, "job spec")

    def count(self, role: Role) -> int:
        return self.simulation.count(role)


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    return validate(Scenario, data, source, "scenario")


def load_scenario(path: str | Path) -> Scenario:
    return parse_scenario(read_toml(path, "scenario"), str(path))


def scenario_from(job: JobSpec, simulation: SimulationSection | None = None) -> Scenario:
    """A scenario from a job spec and a simulation section (Python API)."""
    if isinstance(job, Scenario) and simulation is None:
        return job
    data = job.model_dump(
        mode="json", exclude={"simulation"} if isinstance(job, Scenario) else None
    )
    sim = (
        simulation
        if simulation is not None
        else (job.simulation if isinstance(job, Scenario) else SimulationSection())
    )
    data["simulation"] = sim.model_dump(mode="json")
    try:
        return parse_scenario(data, job.name)
    except ConfigError:
        raise
