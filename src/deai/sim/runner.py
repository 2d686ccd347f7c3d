"""Build a simulated network from a scenario, run it, and measure it.

:func:`plan` does everything that can fail for a reason knowable from the scenario
(loading and splitting the data, binding the job spec to its parties and data schema,
sizing the model, matching attacks to the data) and is what ``deai check`` runs;
:func:`execute` runs a plan with the real roles on the simulation engine. The metrics
collector observes rounds (it is not part of the protocol and costs no bytes) and
evaluates each new global model on the held-out test split.
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deai.attacks.data import Corner, TriggerSpec, add_trigger
from deai.attacks.spec import AttackName, AttackSpec
from deai.errors import ConfigError, DeaiError
from deai.job.spec import DataSchema, JobSpec, Parties
from deai.learning.data import Dataset, Splits
from deai.learning.models import MAX_PARAMETERS, ModelConfig, check_model_size
from deai.learning.params import FlatModel
from deai.learning.partition import label_histograms, label_skew, partition
from deai.learning.topology import consensus_distance
from deai.learning.train import evaluate, evaluate_many
from deai.node.base import NodeContext, build_codec_for, model_for
from deai.node.base import Role as NodeRole
from deai.node.faults import Fault, FaultyBehaviour
from deai.node.hooks import Behaviour, Honest, Rejection, RoundOutcome, Settlement, lean
from deai.node.roles import Provider, Requester, Validator
from deai.node.secagg import SecAggServerRole
from deai.node.secagg import install as install_secagg
from deai.sim.adversary import Adversary, AttackerGroup
from deai.sim.behaviours import DataPoisoning
from deai.sim.chain_job import ChainSetup, SimChain
from deai.sim.engine import Simulation
from deai.sim.heap import keep_freed_blocks
from deai.sim.network import FaultModel, NetworkConfig, NetworkModel, draw_profiles
from deai.sim.population import (
    CrossDeviceRequester,
    LazyProvider,
    check_cross_device,
    cohort_participation,
    memory_estimate,
)
from deai.sim.scenario import NO_SECAGG, Role, Scenario

ProgressFn = Callable[[int, int], None]
REQUESTER = "requester"


# ------------------------------------------------------------------------------ planning
@dataclass(frozen=True)
class ProviderPlan:
    node_id: str
    behaviour: str  # "honest", a fault name, or "attack:<name>"
    group: int  # index of its [[simulation.nodes]] group
    attack: AttackSpec | None = None  # a built-in attack
    custom: str | None = None  # a user-registered attack's name


@dataclass(frozen=True)
class Plan:
    """A scenario made concrete: everything :func:`execute` needs, all of it checked."""

    scenario: Scenario
    spec: JobSpec  # bound: parties and data schema filled in
    splits: Splits
    parts: list[np.ndarray]  # provider i's indices into splits.train
    providers: list[ProviderPlan]
    validators: list[str]
    liars: set[str]
    parameters: int
    stakes: dict[str, float] = field(default_factory=dict)  # validator -> stake (ETH)


def _attack_for(s: Scenario, group_attack: str, params: dict[str, Any], splits: Splits) -> Any:
    from deai.registry import attacks

    entry = attacks.get(group_attack)
    if not entry.builtin:
        return None
    p = dict(params)
    k = splits.train.num_classes
    if group_attack == AttackName.LABEL_FLIP.value:
        if "num_classes" in p and int(p["num_classes"]) != k:
            raise ConfigError(
                f"simulation.nodes: label_flip.num_classes = {p['num_classes']} but the "
                f"dataset {s.simulation.data.dataset!r} has {k} classes"
            )
        p["num_classes"] = k
    if group_attack == AttackName.BACKDOOR.value:
        shape = splits.train.input_shape
        if len(shape) != 3:
            raise ConfigError(
                f"simulation.nodes: the backdoor attack stamps a pixel trigger and needs image "
                f"data (C, H, W); {s.simulation.data.dataset!r} has shape {shape}"
            )
        if int(p.get("target", 0)) >= k:
            raise ConfigError(f"simulation.nodes: backdoor.target must be < {k} classes")
        size = int(p.get("size", 2))
        if size > min(shape[1:]):
            raise ConfigError(f"simulation.nodes: backdoor.size {size} exceeds the image size")
    return entry.factory(**p)


def plan(s: Scenario) -> Plan:
    """Check and bind a scenario without running it. Raises one ``ConfigError`` for
    anything knowable from the file."""
    sim = s.simulation
    d = sim.data
    splits = d.load(s.seed)
    if len(splits.validation) == 0 and (
        s.settlement is not None or s.aggregation.rule == "fltrust"
    ):
        what = "settlement (payouts are measured on it)" if s.settlement else "fltrust"
        raise ConfigError(
            f"simulation.data.validation_fraction: 0 leaves the requester no validation data, "
            f"which {what} needs"
        )
    providers: list[ProviderPlan] = []
    for gi, g in enumerate(sim.nodes):
        if g.role is not Role.PROVIDER:
            continue
        attack = _attack_for(s, g.attack, g.attack_params, splits) if g.attack else None
        label = f"attack:{g.attack}" if g.attack is not None else g.behaviour
        custom = g.attack if g.attack is not None and attack is None else None
        for _ in range(g.count):
            providers.append(
                ProviderPlan(f"provider-{len(providers):03d}", label, gi, attack, custom)
            )
    liars_flags = [
        g.behaviour == "liar" for g in sim.nodes if g.role is Role.VALIDATOR for _ in range(g.count)
    ]
    stakes_eth = [
        sim.stake_eth if g.stake_eth is None else g.stake_eth
        for g in sim.nodes
        if g.role is Role.VALIDATOR
        for _ in range(g.count)
    ]
    validators = [f"validator-{i}" for i in range(len(liars_flags))]
    if s.parties is not None:  # explicit ids (e.g. to match a real network's addresses)
        if len(s.parties.providers) != len(providers) or len(s.parties.validators) != len(
            validators
        ):
            raise ConfigError(
                "parties: the spec names "
                f"{len(s.parties.providers)} providers and {len(s.parties.validators)} "
                f"validators, the simulation has {len(providers)} and {len(validators)}"
            )
        providers = [
            ProviderPlan(pid, p.behaviour, p.group, p.attack, p.custom)
            for pid, p in zip(s.parties.providers, providers, strict=True)
        ]
        validators = list(s.parties.validators)
    liars = {v for v, liar in zip(validators, liars_flags, strict=True) if liar}
    stakes = dict(zip(validators, stakes_eth, strict=True))
    if liars and s.settlement is None:
        raise ConfigError(
            "simulation.nodes: a lying validator needs [settlement] (the chain is what catches it)"
        )
    parts = partition(splits.train.y.numpy(), len(providers), d.partition_config(), s.seed)
    train = splits.train
    parameters = check_model_size(
        ModelConfig(s.model.name, s.model.params),
        train.input_shape,
        train.num_classes,
        MAX_PARAMETERS,
    )
    schema = DataSchema(
        input_shape=train.input_shape,
        num_classes=train.num_classes,
        validation=splits.validation.digest(),
    )
    requester = s.parties.requester if s.parties is not None else REQUESTER
    job = _with_cohort(s, len(providers))
    spec = job.bind(
        data=schema,
        parties=Parties(
            requester=requester,
            providers=tuple(p.node_id for p in providers),
            validators=tuple(validators),
        ),
    )
    if spec.settlement is not None and len(validators) > 9:
        raise ConfigError("settlement: the embedded chain funds at most 9 validators")
    model_for(spec)  # builds (and caches) the model: a factory that fails, fails here
    build_codec_for(spec, 0)
    _check_memory(s, spec, splits)
    return Plan(s, spec, splits, parts, providers, validators, liars, parameters, stakes)


def _with_cohort(s: Scenario, population: int) -> JobSpec:
    cohort = s.simulation.cohort
    if cohort is None:
        return s.job
    if s.algorithm.participation < 1.0:
        raise ConfigError(
            "simulation.cohort sets the share drawn per round; leave algorithm.participation out"
        )
    secure = s.privacy is not None and s.privacy.secure_aggregation
    check_cross_device(s.job, secure)
    share = cohort_participation(cohort, population)
    algorithm = s.algorithm.model_copy(update={"participation": share})
    return s.job.model_copy(update={"algorithm": algorithm})


def _check_memory(s: Scenario, spec: JobSpec, splits: Splits) -> None:
    """The total provider count is capped by the run's memory estimate, stated."""
    n = len(spec.providers)
    drawn = n if s.simulation.cohort is None else min(n, s.simulation.cohort * spec.rounds)
    per = max(1, len(splits.train) // n)
    rows = spec.drawn_count() * per
    data = splits.train
    est = memory_estimate(n, drawn, data, rows)
    if s.simulation.cohort is None:  # eager: every provider holds a copy of its data
        est = memory_estimate(n, n, data, rows + len(data))
    budget = s.simulation.memory_gb * 2**30
    if est.total_bytes > budget:
        raise ConfigError(
            f"simulation: {n:,} providers need about {est.describe()}, over "
            f"simulation.memory_gb = {s.simulation.memory_gb:g}"
            + ("" if s.simulation.cohort else "; with simulation.cohort only the drawn are built")
        )


# ---------------------------------------------------------------------------- measuring
class MetricsCollector:
    """Observer: evaluates every round's model on the test split and snapshots bytes."""

    def __init__(
        self,
        sim: Simulation,
        model: FlatModel,
        test: Dataset,
        providers: list[str],
        progress: ProgressFn | None,
        rounds: int,
        coordinator: str,
        attackers: set[str] | None = None,
        trigger: TriggerSpec | None = None,
        keep_updates: bool = False,
    ) -> None:
        self.coordinator = coordinator  # the validator whose rounds are reported
        self.keep_updates = keep_updates  # keep each round's update stack in ``outcomes``
        self.attackers = attackers or set()
        self.trigger = trigger
        if trigger is not None:  # triggered test images whose true label is not the target
            keep = test.y != trigger.target
            self._triggered = (add_trigger(test.x[keep], trigger), trigger.target)
        self.sim, self.model, self.test = sim, model, test
        self.providers = providers
        self.progress = progress
        self.total_rounds = rounds
        self.rounds: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.outcomes: list[RoundOutcome] = []
        self._gossip: dict[int, dict[str, tuple[Tensor, float]]] = {}
        self._last_up = 0
        self._last_down = 0
        self._last_time = 0.0

    def _bytes(self) -> tuple[int, int]:
        up = sum(self.sim.bytes.sent[p] for p in self.providers)
        down = sum(self.sim.bytes.received[p] for p in self.providers)
        d_up, d_down = up - self._last_up, down - self._last_down
        self._last_up, self._last_down = up, down
        return d_up, d_down

    def _record(self, round_: int, params: Tensor, time_s: float, **extra: Any) -> None:
        # the byte counters as of now in virtual time (see Simulation.after_event)
        self.sim.after_event(lambda: self._write(round_, params, time_s, **extra))

    def _write(self, round_: int, params: Tensor, time_s: float, **extra: Any) -> None:
        loss, acc = evaluate(self.model, params, self.test)
        if self.trigger is not None:
            x, target = self._triggered
            logits = self.model.forward(params, x).detach()
            extra["backdoor_success"] = float((logits.argmax(dim=1) == target).float().mean())
        up, down = self._bytes()
        self.rounds.append(
            {
                "round": round_,
                "accuracy": acc,
                "loss": loss,
                "bytes_up": up,
                "bytes_down": down,
                "sim_time_s": time_s,
                "round_time_s": time_s - self._last_time,
                **extra,
            }
        )  # extra may override round_time_s with the validator's own open-to-close time
        self._last_time = time_s
        if self.progress is not None:
            self.progress(round_, self.total_rounds)

    def on_round(self, outcome: RoundOutcome) -> None:
        if outcome.validator != self.coordinator:
            return
        params = outcome.require_params()
        self.outcomes.append(outcome if self.keep_updates else lean(outcome))
        extra: dict[str, Any] = {}
        if outcome.privacy is not None:
            extra["epsilon"] = outcome.privacy.epsilon_public_max
            extra["epsilon_aggregator"] = outcome.privacy.epsilon_aggregator_max
            extra["noise_multiplier"] = outcome.privacy.noise_multiplier
        self._record(
            outcome.round,
            params,
            outcome.closed_s,
            round_time_s=outcome.closed_s - outcome.started_s,
            accepted=len(outcome.accepted),
            applied=outcome.applied,
            note=outcome.note,
            **extra,
            **self._detection(outcome),
            missing=list(outcome.missing),
            excluded=list(outcome.excluded),
            rejected=[{"sender": r.sender, "reason": r.reason} for r in outcome.rejections],
        )

    def _detection(self, outcome: RoundOutcome) -> dict[str, Any]:
        """Exclusions (aggregator) and rejections (validation) scored against attackers."""
        if not self.attackers:
            return {}
        dropped = set(outcome.excluded) | {r.sender for r in outcome.rejections}
        bad = {p for p in outcome.participants if p in self.attackers}
        good = set(outcome.participants) - bad
        return {
            "true_positive_rate": len(dropped & bad) / len(bad) if bad else None,
            "false_positive_rate": len(dropped & good) / len(good) if good else None,
        }

    def on_gossip(self, node_id: str, round_: int, params: Tensor, time_s: float) -> None:
        got = self._gossip.setdefault(round_, {})
        got[node_id] = (params, time_s)
        if len(got) < len(self.providers):
            return
        stack = torch.stack([got[p][0] for p in self.providers])  # [n, d]
        _, node_acc = evaluate_many(self.model, stack, self.test)
        self._record(
            round_,
            stack.mean(dim=0),
            max(t for _, t in got.values()),
            consensus_distance=consensus_distance(stack),
            node_accuracy_mean=float(node_acc.mean()),
        )
        del self._gossip[round_]

    def on_rejection(self, node_id: str, rejection: Rejection) -> None:
        self.rejections.append(
            {
                "at": node_id,
                "round": rejection.round,
                "sender": rejection.sender,
                "reason": rejection.reason,
                "detail": rejection.detail,
            }
        )


# ------------------------------------------------------------------------------- running
@dataclass
class RunResult:
    """What a run produced: the metrics (the report's input) and the raw pieces."""

    metrics: dict[str, Any]
    histograms: np.ndarray  # [providers, classes]
    provider_ids: list[str]
    final_params: Tensor | None
    spec: JobSpec
    rejections: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[RoundOutcome] = field(default_factory=list)


def _behaviour(p: ProviderPlan, seed: int) -> Behaviour:
    if p.attack is not None:
        return DataPoisoning(p.attack, seed)
    if p.custom is not None:
        return _custom_attack(p, seed)
    if p.behaviour in ("honest", NO_SECAGG):
        return Honest()
    return FaultyBehaviour(Fault(p.behaviour))


def _custom_attack(p: ProviderPlan, seed: int) -> Behaviour:
    from deai.registry import attacks

    assert p.custom is not None
    made = attacks.get(p.custom).factory(seed=seed)
    for method in ("local_data", "update", "claim"):
        if not callable(getattr(made, method, None)):
            raise ConfigError(
                f"attack {p.custom!r}: its factory must return an object with local_data, "
                f"update and claim (a provider Behaviour); {type(made).__name__} has no {method}"
            )
    behaviour: Behaviour = made
    return behaviour


def _adversary(pl: Plan) -> Adversary | None:
    groups = []
    for gi, g in enumerate(pl.scenario.simulation.nodes):
        members = [p for p in pl.providers if p.group == gi and p.attack is not None]
        if not members:
            continue
        spec = members[0].attack
        assert spec is not None
        nodes = tuple(p.node_id for p in members)
        jittered = AttackSpec(spec.name, spec.params, 1, g.jitter)
        groups.append(AttackerGroup(f"group-{gi}", jittered, nodes, sybil=g.sybil))
    if not groups:
        return None
    codec = build_codec_for(pl.spec, 0)
    hold = 0.5 * pl.spec.round_timeout_s
    return Adversary(
        groups,
        {codec.spec.to_wire(): codec},  # keyed as updates name their codec
        pl.spec.seed,
        hold_s=hold,
        server_lr=pl.spec.algorithm.step_size(),
        aggregate=_public_rule(pl.spec),
    )


def _public_rule(spec: JobSpec) -> Callable[[Tensor], Tensor]:
    """The job's aggregation rule as the adaptive attacker runs it: the spec is public, so
    it builds the same rule (a fresh instance: it cannot see the validators' history)."""
    from deai.aggregation.base import Aggregate, RoundContext
    from deai.registry import aggregators

    def run(rows: Tensor) -> Tensor:
        rule = aggregators.build(spec.aggregation.rule, spec.aggregation.params)
        ctx = RoundContext(senders=tuple(f"row-{i}" for i in range(rows.shape[0])))
        out = rule(rows, torch.ones(rows.shape[0], dtype=rows.dtype), ctx)
        return out.vector if isinstance(out, Aggregate) else out

    return run


def _trigger(pl: Plan) -> TriggerSpec | None:
    for p in pl.providers:
        if p.attack is not None and p.attack.name is AttackName.BACKDOOR:
            a = p.attack
            return TriggerSpec(
                target=int(a.num("target")),
                size=int(a.num("size")),
                value=a.num("value"),
                corner=Corner(a.text("corner")),  # measure the corner the attackers stamp
            )
    return None


def _network(pl: Plan) -> tuple[NetworkModel, FaultModel]:
    net = pl.scenario.simulation.network
    providers = [p.node_id for p in pl.providers]
    servers = [*pl.validators, pl.spec.requester]
    config = NetworkConfig(
        bandwidth_mbps=net.bandwidth_mbps,
        latency_ms=net.latency_ms,
        samples_per_s=net.samples_per_s,
        dropout=net.dropout,
        straggler_fraction=net.straggler_fraction,
        straggler_slowdown=net.straggler_slowdown,
    )
    seed = pl.spec.seed
    return (
        NetworkModel(draw_profiles(config, providers, servers, seed)),
        FaultModel(net.dropout, seed, set(providers)),
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore. The simulation is many small tensor
    ops (its parallelism comes from batching providers), where extra threads only contend:
    measured on the 2-core CI machine, one thread ran the demo's job about 7x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Backend:
    """Where batched training runs: ``local`` (this process) or ``ray`` (Ray workers,
    :mod:`deai.sim.ray_backend`), each flush split into ``workers`` shards (run one after
    the other locally); ``address``: a Ray cluster's (None: start a local instance)."""

    name: str = "local"
    workers: int = 1
    address: str | None = None

    def trainer(self, spec: JobSpec) -> Any:
        from deai.learning.train import train_local
        from deai.sim.backends import ShardedTrainer

        if self.name == "ray":
            from deai.sim.ray_backend import ray_trainer

            return ray_trainer(spec, self.workers, self.address)
        if self.name != "local":
            raise ConfigError(f"backend: {self.name!r}; allowed: local, ray")
        return train_local if self.workers == 1 else ShardedTrainer(self.workers)


@contextmanager
def _few_collections() -> Iterator[None]:
    """Python's cyclic garbage collector rescans the long-lived objects (every node, its
    data) as the run allocates small ones: measured at 1,000 providers it took half of a
    round. Freeze what exists before the run and collect the young generation rarely."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_scenario(
    s: Scenario,
    progress: ProgressFn | None = None,
    threads: int = 1,
    lookahead: bool = True,
    backend: Backend = Backend(),
) -> RunResult:
    """Plan and run one scenario to completion; deterministic given its seeds."""
    with torch_threads(threads):
        return execute(plan(s), progress, lookahead=lookahead, backend=backend)


def execute(
    pl: Plan,
    progress: ProgressFn | None = None,
    lookahead: bool = True,
    backend: Backend = Backend(),
    keep_updates: bool = False,
) -> RunResult:
    """Run a plan. ``lookahead`` lets providers' message handlers run ahead of pending
    training (more requests per batch, same events: see ``Simulation``); off, it is the
    reference the lookahead is tested against. ``backend``: where training runs.
    ``keep_updates``: keep every round's accepted updates and parameters in the result's
    outcomes (what the coordinator saw, for privacy attacks; memory grows by one update
    stack and two parameter vectors a round); off, stored outcomes are lean."""
    wall = time.perf_counter()
    s, spec, splits = pl.scenario, pl.spec, pl.splits
    torch.manual_seed(spec.seed)
    providers = [p.node_id for p in pl.providers]
    network, faults = _network(pl)
    model = model_for(spec)
    adversary = _adversary(pl)
    master = s.simulation.master_seed
    # providers' and validators' roles touch only their own node's state (the collector
    # reads global counters through sim.after_event); the requester ends the run
    ahead = {*providers, *pl.validators} if lookahead else None
    sim = Simulation(
        network,
        faults if faults.dropout > 0 else None,  # no drop-outs: no per-message draw
        adversary,
        master_seed=None if master == "os" else master,
        lookahead_nodes=ahead,
    )
    sim.trainer = backend.trainer(spec)
    backend_info = {"name": backend.name, "workers": backend.workers}
    attackers = {p.node_id for p in pl.providers if p.attack is not None or p.custom is not None}
    collector = MetricsCollector(
        sim,
        model,
        splits.test,
        providers,
        progress,
        spec.rounds,
        pl.validators[0],
        attackers=attackers,
        trigger=_trigger(pl),
        keep_updates=keep_updates,
    )
    lazy = s.simulation.cohort is not None
    requester = (CrossDeviceRequester if lazy else Requester)(spec.requester, spec)
    sim.add_node(spec.requester, requester)
    secure = spec.privacy is not None and spec.privacy.secure_aggregation
    chain: SimChain | None = None
    chain_error: str | None = None
    if spec.settlement is not None:
        chain = SimChain(ChainSetup(s.simulation.stake_eth, pl.stakes), spec, pl.liars)
        sim.before_offload.append(chain.sync_clock)

    by_id: dict[str, Validator] = {}

    def settlement(
        spec_: JobSpec, model_: FlatModel, validation: Dataset, ctx: NodeContext
    ) -> Settlement | None:
        if chain is None:
            return None
        # a round this validator closed incomplete settled with another model: it abstains
        # from the rest of the job (stops driving, delivers nothing), as the daemon's does
        role = by_id[ctx.node_id]
        return chain.member(
            ctx.node_id, ctx, model_, validation, on_diverged=lambda: role.abstain(spec_.job_id)
        )

    validator_roles: list[Validator] = []
    for v in pl.validators:
        role = Validator(
            v,
            lambda _spec: splits.validation,
            settlement=settlement if chain is not None else None,
            observer=collector,
            keep_updates=keep_updates,
        )
        validator_roles.append(role)
        by_id[v] = role
        sim.add_node(v, role, *(install_secagg(None, role) if secure else []))
    provider_roles: list[Provider] = []
    if lazy:
        assert isinstance(requester, CrossDeviceRequester)
        _add_lazy(pl, sim, requester, collector, provider_roles)
    for i, (p, idx) in enumerate(zip(pl.providers, pl.parts, strict=True)):
        if lazy:
            break
        provider = Provider(
            p.node_id,
            splits.train.subset(idx),
            behaviour=_behaviour(p, spec.seed + i),
            observer=collector,
        )
        provider_roles.append(provider)
        client = secure and p.behaviour != NO_SECAGG  # the fault: no SecAgg client installed
        sim.add_node(p.node_id, provider, *(install_secagg(provider, None) if client else []))

    def done() -> bool:
        return requester.result is not None and (chain is None or chain.finished)

    with _few_collections(), keep_freed_blocks():
        sim.run(stop=done)
    metrics = _metrics(
        pl, sim, collector, requester, validator_roles, attackers, wall, provider_roles
    )
    remote = getattr(sim.trainer, "run", None)
    metrics["backend"] = {**backend_info, "remote_shards": getattr(remote, "tasks", 0)}
    if chain is not None:
        try:
            metrics["ledger"] = chain.finish()
        except DeaiError as e:  # the run's output is never lost to a settlement failure
            chain_error = f"settlement failed: {e}"
            metrics["ledger"] = {"errors": [chain_error]}
        metrics["settlement_errors"] = metrics["ledger"].get("errors", [])
    hist = label_histograms(splits.train.y.numpy(), pl.parts, splits.train.num_classes)
    return RunResult(
        metrics,
        hist,
        providers,
        requester.result,
        spec,
        collector.rejections,
        collector.outcomes,
    )


def _add_lazy(
    pl: Plan,
    sim: Simulation,
    requester: CrossDeviceRequester,
    collector: MetricsCollector,
    roles: list[Provider],
) -> None:
    """Every provider of the population as a lazy node: built, and handed the job, when
    first drawn (its roles then join ``roles``)."""
    train, seed = pl.splits.train, pl.spec.seed
    opened = requester.open_job()
    sim.checkin = lambda _node: [(pl.spec.requester, opened)]

    def factory(i: int) -> list[NodeRole]:
        p = pl.providers[i]
        role = LazyProvider(
            p.node_id, train, pl.parts[i], behaviour=_behaviour(p, seed + i), observer=collector
        )
        roles.append(role)
        return [role]

    for i, p in enumerate(pl.providers):
        sim.add_lazy(p.node_id, functools.partial(factory, i))


def _metrics(
    pl: Plan,
    sim: Simulation,
    collector: MetricsCollector,
    requester: Requester,
    validators: list[Validator],
    attackers: set[str],
    wall: float,
    providers_roles: list[Provider],
) -> dict[str, Any]:
    s, spec, splits = pl.scenario, pl.spec, pl.splits
    model = model_for(spec)
    rounds = collector.rounds
    final = requester.result
    final_loss, final_acc = (
        evaluate(model, final, splits.test) if final is not None else (math.nan, 0.0)
    )
    wall_s = time.perf_counter() - wall
    labels = splits.train.y.numpy()
    m: dict[str, Any] = {
        "scenario": s.name,
        "job_id": spec.job_id,
        "spec_hash": spec.spec_hash(),
        "algorithm": str(spec.algorithm.name),
        "aggregator": spec.aggregation.rule,
        "codec": spec.codec.name,
        "dataset": s.simulation.data.dataset,
        "seed": spec.seed,
        "providers": len(pl.providers),
        "validators": len(pl.validators),
        "model_parameters": pl.parameters,
        "final_accuracy": final_acc,
        "final_loss": final_loss,
        "final_model_hash": requester.result_hash,
        "rounds": rounds,
        "total_bytes_up": sum(r["bytes_up"] for r in rounds),
        "update_bytes": sim.bytes.by_kind["update"],
        # the same update messages with float32 payloads (identity codec)
        "uncompressed_update_bytes": sim.bytes.raw_update_bytes,
        "total_bytes_down": sum(r["bytes_down"] for r in rounds),
        "total_bytes": sim.bytes.total(),
        "bytes_by_kind": dict(sim.bytes.by_kind),
        "messages": sim.bytes.messages,
        "messages_dropped": sim.bytes.dropped,
        "train_batches": sim.train_batches,  # batched training computations run
        "providers_built": len(providers_roles),  # with a cohort: those ever drawn
        "sim_time_s": sim.now,
        "wall_time_s": wall_s,
        "rounds_per_s": len(rounds) / wall_s if wall_s > 0 else 0.0,
        "label_skew": label_skew(labels, pl.parts, splits.train.num_classes),
        "provider_examples": [len(p) for p in pl.parts],
        "provider_behaviours": {p.node_id: p.behaviour for p in pl.providers},
        "attackers": sorted(attackers),
        "rejections": collector.rejections,
        "notes": [f"round {r['round']}: {r['note']}" for r in rounds if r.get("note")],
        "refusals": [
            {"node": v.node_id, "job_id": r.job_id, "reason": r.reason}
            for v in validators
            for r in v.refusals
        ]
        + [
            {"node": p.node_id, "job_id": r.job_id, "round": r.round, "reason": r.reason}
            for p in providers_roles
            for r in p.refusals
        ],
    }
    m["secagg_aborts"] = [
        {"round": a.round, "stage": a.stage.name, "reason": a.reason}
        for r in sim.nodes[pl.validators[0]]
        if isinstance(r, SecAggServerRole)
        for a in r.aborts
    ]
    job = validators[0].jobs.get(spec.job_id)
    m["stopped"] = job.stopped if job is not None else None
    if spec.settlement is not None:
        from deai.node.payouts import PAYOUT_RULES

        c = spec.contribution
        m["payout_rule"] = c.payout.value
        m["payout_rule_note"] = f"Payout rule '{c.payout.value}' ({c.evaluator.value}): " + (
            PAYOUT_RULES[c.payout] + "."
        )
    if spec.privacy is not None:
        m["privacy"] = _privacy_metrics(spec, collector)
    if collector.trigger is not None and rounds:
        m["backdoor_success"] = rounds[-1]["backdoor_success"]
    return m


def _privacy_metrics(spec: JobSpec, collector: MetricsCollector) -> dict[str, Any]:
    p = spec.privacy
    assert p is not None
    last = next((o.privacy for o in reversed(collector.outcomes) if o.privacy), None)
    per = {} if last is None else last.per_provider
    secure = p.secure_aggregation
    worst_agg = max((v.epsilon_aggregator for v in per.values()), default=0.0)
    if secure:
        against = (
            "the validators see only the secure sum, so against them epsilon is the same as "
            "against the public model (given fewer colluding providers than the SecAgg "
            "threshold)"
        )
    else:
        against = (
            "without secure aggregation every validator sees each update with only its 1/m "
            f"share of the noise: epsilon against the aggregator is {worst_agg:.3g}, far "
            "weaker than against the public model"
        )
    return {
        **p.model_dump(mode="json"),
        "epsilon_spent": max((v.epsilon_public for v in per.values()), default=0.0),
        "epsilon_aggregator": worst_agg,
        "epsilon_aggregator_note": against,
        "per_provider": {
            k: {
                "rounds": v.rounds,
                "epsilon_public": v.epsilon_public,
                "epsilon_aggregator": v.epsilon_aggregator,
            }
            for k, v in sorted(per.items())
        },
        "accounting": "per provider, Opacus "
        + p.accountant.value.upper()
        + ", one Gaussian mechanism at q = 1 per round contributed (the draw is public: no "
        "amplification), at that round's effective noise",
    }
