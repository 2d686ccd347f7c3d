"""Build a simulated network from a scenario, run it, and measure it.

The runner wires real roles to the simulation engine; the metrics collector observes
rounds (it is not part of the protocol and costs no bytes) and evaluates each new global
model on the held-out test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deai.aggregation.base import Aggregator
from deai.aggregation.default import DefaultConfig
from deai.aggregation.registry import AggregatorConfig, AggregatorName, build_aggregator
from deai.attacks.data import TriggerSpec, add_trigger
from deai.attacks.spec import AttackName
from deai.compression.base import Codec
from deai.compression.error_feedback import ErrorFeedback
from deai.compression.registry import CodecConfig, CodecName, build_codec
from deai.learning.algorithms import AlgorithmName, AlgorithmSpec, parallel_sgd
from deai.learning.data import Dataset, Splits
from deai.learning.models import ModelConfig
from deai.learning.params import FlatModel
from deai.learning.partition import label_histograms, label_skew, partition
from deai.learning.topology import consensus_distance
from deai.learning.train import LocalTrainConfig, evaluate, evaluate_many
from deai.node.hooks import Rejection, RoundOutcome
from deai.node.job import JobSpec, PrivacySpec, UpdatePolicy
from deai.node.roles import Encoder, Provider, Requester, Validator, model_for
from deai.node.secagg import SecAggServerRole
from deai.node.secagg import install as install_secagg
from deai.sim.adversary import Adversary, AttackerGroup
from deai.sim.behaviours import build_behaviour
from deai.sim.chain_job import ChainSetup, SimChain
from deai.sim.engine import Simulation
from deai.sim.network import FaultModel, NetworkConfig, NetworkModel, draw_profiles
from deai.sim.scenario import AlgorithmSection, Role, Scenario

ProgressFn = Callable[[int, int], None]


def make_aggregator(s: Scenario) -> Aggregator:
    """A fresh aggregator for one validator (stateful rules keep per-job history)."""
    a = s.aggregation
    return build_aggregator(
        s.aggregator,
        AggregatorConfig(
            f=a.f,
            multi_krum_m=a.multi_krum_m,
            trim_fraction=a.trim_fraction,
            norm_bound=a.norm_bound,
            default=DefaultConfig(
                trim_fraction=a.default_trim_fraction, use_weights=a.default_use_weights
            ),
        ),
    )


def make_codec(s: Scenario, shapes: tuple[tuple[int, ...], ...]) -> Codec:
    c = s.compression
    return build_codec(
        s.codec,
        CodecConfig(
            ratio=c.ratio, bits=c.bits, levels=c.levels, rank=c.rank, shapes=shapes, seed=s.seed
        ),
    )


def make_encoder(s: Scenario, shapes: tuple[tuple[int, ...], ...]) -> Encoder:
    codec = make_codec(s, shapes)
    use_ef = s.compression.error_feedback and s.codec is not CodecName.IDENTITY
    return ErrorFeedback(codec) if use_ef else codec


def algorithm_spec(a: AlgorithmSection) -> AlgorithmSpec:
    if a.name is AlgorithmName.PARALLEL_SGD:
        return parallel_sgd(a.lr, a.batch_size)
    local = LocalTrainConfig(
        epochs=a.epochs,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        momentum=a.momentum,
        prox_mu=a.prox_mu,
    )
    return AlgorithmSpec(
        name=a.name,
        local=local,
        server_lr=a.server_lr,
        weighting=a.weighting,
        topology=a.topology,
        participation=a.participation,
    )


@dataclass
class RunResult:
    metrics: dict[str, Any]
    histograms: np.ndarray  # [providers, classes]
    provider_ids: list[str]
    final_params: Tensor | None
    rejections: list[dict[str, Any]] = field(default_factory=list)


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
    ) -> None:
        self.coordinator = coordinator  # the validator whose rounds are reported
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
        self._record(
            outcome.round,
            outcome.params,
            outcome.closed_s,
            round_time_s=outcome.closed_s - outcome.started_s,
            epsilon=outcome.epsilon,
            accepted=len(outcome.accepted),
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


def _privacy_spec(s: Scenario, n_providers: int) -> PrivacySpec | None:
    p = s.privacy
    if p is None:
        return None
    drawn = max(1, math.ceil(s.algorithm.participation * n_providers))
    return PrivacySpec(
        clip=p.clip,
        noise_multiplier=p.noise_multiplier,
        epsilon=p.epsilon,
        delta=p.delta,
        secure_aggregation=p.secure_aggregation,
        min_survivors=max(1, math.ceil(p.threshold * drawn)),
    )


def build_spec(s: Scenario, splits: Splits, providers: list[str], validators: list[str]) -> JobSpec:
    return JobSpec(
        job_id=f"{s.name}-{s.seed}",
        rounds=s.rounds,
        seed=s.seed,
        algorithm=algorithm_spec(s.algorithm),
        model=ModelConfig(
            name=s.model.name, hidden=tuple(s.model.hidden), channels=s.model.channels
        ),
        input_shape=splits.train.input_shape,
        num_classes=splits.train.num_classes,
        requester="requester",
        providers=tuple(providers),
        validators=tuple(validators),
        round_timeout_s=s.network.round_timeout_s,
        privacy=_privacy_spec(s, len(providers)),
        policy=UpdatePolicy(
            max_norm=s.validation.max_update_norm, max_examples=s.validation.max_examples
        ),
    )


@dataclass(frozen=True)
class _ProviderPlan:
    node_id: str
    behaviour: str  # "honest", a fault name, or "attack:<name>"
    group: int  # index of its [[nodes]] group


def _provider_plans(s: Scenario) -> list[_ProviderPlan]:
    plans: list[_ProviderPlan] = []
    for gi, g in enumerate(s.nodes):
        if g.role is not Role.PROVIDER:
            continue
        label = f"attack:{g.attack}" if g.attack is not None else g.behaviour
        for _ in range(g.count):
            plans.append(_ProviderPlan(f"provider-{len(plans):03d}", label, gi))
    return plans


def _adversary(s: Scenario, plans: list[_ProviderPlan], codec: Codec) -> Adversary | None:
    groups = []
    for gi, g in enumerate(s.nodes):
        spec = g.attack_spec()
        if spec is None:
            continue
        nodes = tuple(p.node_id for p in plans if p.group == gi)
        groups.append(AttackerGroup(f"group-{gi}", spec, nodes, sybil=g.sybil))
    if not groups:
        return None
    return Adversary(groups, {codec.name: codec}, s.seed, hold_s=0.5 * s.network.round_timeout_s)


def _trigger(s: Scenario) -> TriggerSpec | None:
    for g in s.nodes:
        spec = g.attack_spec()
        if spec is not None and spec.name is AttackName.BACKDOOR:
            return TriggerSpec(
                target=int(spec.num("target")), size=int(spec.num("size")), value=spec.num("value")
            )
    return None


def _network(
    s: Scenario, providers: list[str], servers: list[str]
) -> tuple[NetworkModel, FaultModel]:
    net = s.network
    config = NetworkConfig(
        bandwidth_mbps=net.bandwidth_mbps,
        latency_ms=net.latency_ms,
        samples_per_s=net.samples_per_s,
        dropout=net.dropout,
        straggler_fraction=net.straggler_fraction,
        straggler_slowdown=net.straggler_slowdown,
    )
    return (
        NetworkModel(draw_profiles(config, providers, servers, s.seed)),
        FaultModel(net.dropout, s.seed, set(providers)),
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


def run_scenario(s: Scenario, progress: ProgressFn | None = None, threads: int = 1) -> RunResult:
    """Run one scenario to completion; deterministic given ``s.seed``."""
    with torch_threads(threads):
        return _run_scenario(s, progress)


def _run_scenario(s: Scenario, progress: ProgressFn | None) -> RunResult:
    wall = time.perf_counter()
    torch.manual_seed(s.seed)
    d = s.data
    splits = d.load(s.seed)
    plans = _provider_plans(s)
    providers = [p.node_id for p in plans]
    validator_liar = [
        g.behaviour == "liar" for g in s.nodes if g.role is Role.VALIDATOR for _ in range(g.count)
    ]
    validators = [f"validator-{i}" for i in range(len(validator_liar))]
    labels = splits.train.y.numpy()
    parts = partition(labels, len(plans), d.partition_config(), s.seed)
    spec = build_spec(s, splits, providers, validators)
    network, faults = _network(s, providers, [*validators, "requester"])
    model = model_for(spec)
    shapes = tuple(tuple(sh) for sh in model.shapes)
    codec = make_codec(s, shapes)
    adversary = _adversary(s, plans, codec)
    sim = Simulation(network, faults, adversary)
    attackers = adversary.attackers if adversary is not None else set()
    collector = MetricsCollector(
        sim,
        model,
        splits.test,
        providers,
        progress,
        s.rounds,
        validators[0],
        attackers=attackers,
        trigger=_trigger(s),
    )
    requester = Requester("requester", spec)
    sim.add_node("requester", requester)
    root = splits.validation if s.aggregator is AggregatorName.FLTRUST else None
    secure = spec.privacy is not None and spec.privacy.secure_aggregation
    chain = (
        SimChain(
            ChainSetup(
                s.ledger.budget_eth, s.ledger.stake_eth, s.ledger.committee, s.ledger.evaluator
            ),
            spec,
            validators,
            providers,
        )
        if s.ledger
        else None
    )
    validator_roles: list[Validator] = []
    for v, liar in zip(validators, validator_liar, strict=True):
        settlement = (
            chain.member(v, model_for(spec), splits.validation, spec.algorithm.server_lr, liar)
            if chain
            else None
        )
        validator_roles.append(
            Validator(
                v,
                splits.validation,
                aggregator=make_aggregator(s),
                codecs={codec.name: codec},
                settlement=settlement,
                observer=collector,
                root_data=root,
            )
        )
        sim.add_node(
            v, validator_roles[-1], *(install_secagg(None, validator_roles[-1]) if secure else [])
        )
    for i, (plan, idx) in enumerate(zip(plans, parts, strict=True)):
        group = s.nodes[plan.group]
        behaviour = build_behaviour(group.behaviour, s.seed + i, group.attack_spec())
        provider = Provider(
            plan.node_id,
            splits.train.subset(idx),
            codec=make_encoder(s, shapes),
            behaviour=behaviour,
            observer=collector,
        )
        sim.add_node(plan.node_id, provider, *(install_secagg(provider, None) if secure else []))
    sim.run(stop=lambda: requester.result is not None)
    rounds = collector.rounds
    final = requester.result
    final_loss, final_acc = (
        evaluate(model, final, splits.test) if final is not None else (float("nan"), 0.0)
    )
    wall_s = time.perf_counter() - wall
    metrics: dict[str, Any] = {
        "scenario": s.name,
        "algorithm": str(s.algorithm.name),
        "aggregator": str(s.aggregator),
        "codec": str(s.codec),
        "seed": s.seed,
        "providers": len(plans),
        "validators": len(validators),
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
        "messages": sim.bytes.messages,
        "messages_dropped": sim.bytes.dropped,
        "sim_time_s": sim.now,
        "wall_time_s": wall_s,
        "rounds_per_s": len(rounds) / wall_s if wall_s > 0 else 0.0,
        "label_skew": label_skew(labels, parts, splits.train.num_classes),
        "provider_examples": [len(p) for p in parts],
        "provider_behaviours": {p.node_id: p.behaviour for p in plans},
        "attackers": sorted(attackers),
        "rejections": collector.rejections,
    }
    metrics["secagg_aborts"] = [
        {"round": a.round, "stage": a.stage.name, "reason": a.reason}
        for r in sim.nodes[validators[0]]
        if isinstance(r, SecAggServerRole)
        for a in r.aborts
    ]
    if chain is not None:
        metrics["ledger"] = chain.finish()
    job = validator_roles[0].jobs.get(spec.job_id)
    metrics["stopped"] = job.stopped if job is not None else None
    if s.privacy is not None:
        metrics["privacy"] = {
            **s.privacy.model_dump(),
            "epsilon_spent": next(
                (r["epsilon"] for r in reversed(rounds) if r.get("epsilon") is not None), 0.0
            ),
        }
    if collector.trigger is not None and rounds:
        metrics["backdoor_success"] = rounds[-1]["backdoor_success"]
    hist = label_histograms(labels, parts, splits.train.num_classes)
    return RunResult(metrics, hist, providers, final, collector.rejections)
