"""The Python API: build a job, ``simulate`` it, ``submit`` it to a running network.

::

    import deai

    job = deai.JobSpec(
        name="wine",
        rounds=20,
        model=deai.ModelSpec(name="mlp", hidden=[32]),
        aggregation=deai.AggregationSpec(rule="default"),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(dataset="wine", partition="iid"),
        nodes=[deai.NodeGroup(role="provider", count=8), deai.NodeGroup(role="validator")],
    )
    result = deai.simulate(job, world)
    print(result.final_accuracy, result.model_hash)

``simulate`` runs the real roles (the same ``Provider`` and ``Validator`` a deployed node
runs) on the in-memory transport and returns a typed :class:`SimulationResult`. Your own
data: any NumPy arrays or torch ``Dataset`` (``data=``, or register a loader with
``@deai.datasets.register``); your own model, aggregator, codec or attack: one decorator
on the registries of :mod:`deai.registry`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from deai.errors import ConfigError
from deai.job.spec import JobSpec
from deai.learning.data import Dataset
from deai.sim.scenario import DataSource, Scenario, SimulationSection, scenario_from

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RoundRecord:
    """One round as the coordinating validator closed it, measured on the test split."""

    round: int
    accuracy: float
    loss: float
    bytes_up: int  # every message providers sent this round, whole encodings
    bytes_down: int  # every message providers received this round
    sim_time_s: float
    applied: bool  # False: the model did not change (see note)
    note: str
    accepted: int
    excluded: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]  # (sender, reason)
    epsilon: float | None  # worst provider, against the public model (DP jobs)
    epsilon_aggregator: float | None  # worst provider, against the validators
    backdoor_success: float | None
    true_positive_rate: float | None  # attackers excluded or rejected
    false_positive_rate: float | None  # honest providers excluded or rejected

    @staticmethod
    def from_metrics(r: dict[str, Any]) -> RoundRecord:
        return RoundRecord(
            round=int(r["round"]),
            accuracy=float(r["accuracy"]),
            loss=float(r["loss"]),
            bytes_up=int(r["bytes_up"]),
            bytes_down=int(r["bytes_down"]),
            sim_time_s=float(r["sim_time_s"]),
            applied=bool(r.get("applied", True)),
            note=str(r.get("note", "")),
            accepted=int(r.get("accepted", 0)),
            excluded=tuple(r.get("excluded", ())),
            rejected=tuple((x["sender"], x["reason"]) for x in r.get("rejected", ())),
            epsilon=r.get("epsilon"),
            epsilon_aggregator=r.get("epsilon_aggregator"),
            backdoor_success=r.get("backdoor_success"),
            true_positive_rate=r.get("true_positive_rate"),
            false_positive_rate=r.get("false_positive_rate"),
        )


@dataclass(frozen=True)
class Payout:
    provider: str
    behaviour: str
    contribution: float  # summed over rounds (the payout rule's measure)
    owed_wei: int  # what the chain's payout table gives it (settled rounds only)
    paid_wei: int  # what it holds after claiming


@dataclass(frozen=True)
class SimulationResult:
    """What a simulated job produced. ``metrics`` is the full record (metrics.json)."""

    spec: JobSpec  # the bound spec the roles ran
    job_id: str
    model_hash: str | None  # sha256 of the final model's canonical bytes
    params: Tensor | None  # the final model as a flat vector (None: no result)
    final_accuracy: float
    final_loss: float
    rounds: list[RoundRecord]
    payouts: list[Payout]
    epsilon: float | None  # worst provider's epsilon against the public model
    epsilon_aggregator: float | None  # ... against the validators (inf: unbounded)
    stopped: str | None  # why the job ended early, if it did
    notes: list[str]  # rounds that applied no update and why, refusals, settlement errors
    settlement_errors: list[str]
    wall_time_s: float
    sim_time_s: float
    bytes_up: int
    bytes_down: int
    metrics: dict[str, Any] = field(repr=False)
    _run: Any = field(default=None, repr=False, compare=False)

    def write(self, out: str | Path) -> Path:
        """Write ``metrics.json`` and ``report.html`` into ``out``."""
        from deai.sim.report import write_outputs
        from deai.sim.sections import sections_for

        out = Path(out)
        write_outputs(self._run, out, sections_for(self.metrics))
        return out

    def model(self) -> Any:
        """The final model as an ``nn.Module`` (a fresh copy)."""
        import copy

        from deai.node.base import model_for

        if self.params is None:
            raise ConfigError(f"job {self.job_id} produced no model")
        flat = model_for(self.spec)
        module = copy.deepcopy(flat.module)
        from deai.learning.params import FlatModel

        return FlatModel(module).load_into_module(self.params)


def _result(run: Any) -> SimulationResult:
    m = run.metrics
    led = m.get("ledger") or {}
    beh = m.get("provider_behaviours", {})
    payouts = [
        Payout(
            p["node"],
            beh.get(p["node"], ""),
            float(p.get("contribution", 0.0)),
            int(p.get("owed_wei", 0)),
            int(p.get("paid_wei", 0)),
        )
        for p in led.get("providers", [])
    ]
    priv = m.get("privacy") or {}
    notes = list(m.get("notes", [])) + [
        f"{r['node']} refused the job: {r['reason']}" for r in m.get("refusals", [])
    ]
    return SimulationResult(
        spec=run.spec,
        job_id=m["job_id"],
        model_hash=m.get("final_model_hash"),
        params=run.final_params,
        final_accuracy=float(m["final_accuracy"]),
        final_loss=float(m["final_loss"]),
        rounds=[RoundRecord.from_metrics(r) for r in m["rounds"]],
        payouts=payouts,
        epsilon=priv.get("epsilon_spent"),
        epsilon_aggregator=priv.get("epsilon_aggregator"),
        stopped=m.get("stopped"),
        notes=notes,
        settlement_errors=list(m.get("settlement_errors", [])),
        wall_time_s=float(m["wall_time_s"]),
        sim_time_s=float(m["sim_time_s"]),
        bytes_up=int(m["total_bytes_up"]),
        bytes_down=int(m["total_bytes_down"]),
        metrics=m,
        _run=run,
    )


def _with_data(sim: SimulationSection, data: Dataset) -> SimulationSection:
    """Register in-memory data under a content-addressed name and point the simulation
    at it (the same arrays always get the same name)."""
    from deai import registry

    name = f"arrays-{data.digest()[:16]}"
    if name not in registry.datasets:
        registry.datasets.register(name)(lambda seed=0: data)
    source = sim.data.model_dump(mode="json")
    source = {k: v for k, v in source.items() if k in DataSource.model_fields}
    source["dataset"] = name
    return sim.model_copy(update={"data": DataSource.model_validate(source)})


def load(path: str | Path) -> Scenario:
    """A scenario (or job) TOML file, validated."""
    from deai.sim.scenario import load_scenario

    return load_scenario(path)


def simulate(
    job: JobSpec | Scenario | str | Path,
    simulation: SimulationSection | None = None,
    *,
    data: Dataset | None = None,
    progress: Progress | None = None,
    threads: int = 1,
    out: str | Path | None = None,
    backend: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> SimulationResult:
    """Run ``job`` in the simulator with the real roles; return a typed result.

    ``job``: a :class:`JobSpec`, a :class:`Scenario` (spec plus ``[simulation]``) or the
    path of a scenario TOML file. ``simulation`` overrides the scenario's section.
    ``data``: your own dataset (arrays through :func:`deai.learning.data.from_arrays`).
    ``out``: also write metrics.json and report.html there (checked before running).
    ``backend``: where a round's batched training runs, ``"local"`` or ``"ray"`` (split
    into ``workers`` shards on Ray workers; ``ray_address``: a cluster's, None: a local
    Ray instance); see ``deai.sim.ray_backend``.
    """
    from deai.sim.runner import Backend, execute, plan, torch_threads

    if isinstance(job, str | Path):
        job = load(job)
    if out is not None:
        check_out_dir(Path(out))
    scenario = scenario_from(job, simulation)
    if data is not None:
        scenario = scenario_from(scenario.job, _with_data(scenario.simulation, data))
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    with torch_threads(threads):
        run = execute(plan(scenario), progress, backend=Backend(backend, workers, ray_address))
    result = _result(run)
    if out is not None:
        result.write(out)
    return result


def check(
    job: JobSpec | Scenario | str | Path, simulation: SimulationSection | None = None
) -> JobSpec:
    """Everything :func:`simulate` would refuse, without running: returns the bound spec."""
    from deai.sim.runner import plan

    if isinstance(job, str | Path):
        job = load(job)
    return plan(scenario_from(job, simulation)).spec


def check_out_dir(out: Path) -> None:
    """Fail before any work if ``out`` cannot take the run's output files."""
    import os

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not writable")


@dataclass(frozen=True)
class Submitted:
    job_id: str
    spec_hash: str
    nonce: str
    chain_job_id: int | None
    node_url: str


def submit(
    job: JobSpec | Scenario | str | Path,
    node_url: str,
    *,
    keystore: str | Path,
    password: str,
    nonce: str | None = None,
    idempotency_key: str | None = None,
) -> Submitted:
    """Submit ``job`` to the requester node at ``node_url`` (signed with that node's key:
    only its operator may submit). The node binds the data schema from its validation data
    and the parties from the chain, escrows the budget and opens the job. ``nonce`` makes
    the job id; the same spec and nonce always name the same job."""
    from deai.node.http import NodeClient
    from deai.node.keystore import load_key
    from deai.node.signing import Signer

    if isinstance(job, str | Path):
        job = load(job)
    spec = job.job if isinstance(job, Scenario) else job
    signer = Signer(load_key(Path(keystore), password))
    client = NodeClient(node_url)
    try:
        body = json.dumps(
            {
                "spec": spec.model_dump(mode="json"),
                "nonce": nonce,
                "idempotency_key": idempotency_key,
            }
        )
        out = client.submit_job(body, signer)
    finally:
        client.close()
    return Submitted(
        out["job_id"], out["spec_hash"], out.get("nonce", ""), out.get("chain_job_id"), node_url
    )
