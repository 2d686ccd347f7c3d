"""Finding (#16, backdoor_success_default_max): a boosted pixel-trigger backdoor held by
10-20 % of the providers reached 98-100 % success against the default rule in every corner,
alpha and share, because clean data barely moves the trigger's weights and no rule over the
rows removes that push without also removing honest rows that alone hold a rare class.

The attack is written first (the backdoored model obeys the trigger; the default rule
alone lets a backdoor minority through end to end), then the validator-side sentinel:
Neural Cleanse's trigger reversal names the target, unlearning removes the trigger, and the
providers whose own models learn the trigger are left out; on clean models it stays quiet."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deai.aggregation.sentinel import (
    BackdoorSentinel,
    SentinelConfig,
    applicable,
    reverse_triggers,
    suspect,
    unlearn,
)
from deai.attacks.data import Corner, TriggerSpec, add_trigger, poison_dataset
from deai.errors import ConfigError
from deai.learning.data import Dataset, DatasetName, load_dataset
from deai.learning.models import ModelConfig, build_model
from deai.learning.params import FlatModel
from deai.learning.train import LocalTrainConfig, TrainRequest, evaluate, train_local
from deai.sim.runner import run_scenario
from tests.scenario_kit import scenario

TRIGGER = TriggerSpec(target=0, corner=Corner.TOP_LEFT)
CFG = LocalTrainConfig(epochs=15, batch_size=32, lr=0.1, momentum=0.9)


def _train(flat: FlatModel, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Any:
    return train_local(flat, [TrainRequest(start, x, y, CFG, 0)])[0].params


def _poisoned(d: Dataset, fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    return poison_dataset(d.x, d.y, TRIGGER, fraction, torch.Generator().manual_seed(0))


def _obeys(flat: FlatModel, params: torch.Tensor, d: Dataset) -> float:
    """Share of the non-target test images the real trigger sends to the target."""
    keep = d.y != TRIGGER.target
    with torch.no_grad():
        pred = flat.forward(params, add_trigger(d.x[keep], TRIGGER)).argmax(dim=-1)
    return float((pred == TRIGGER.target).float().mean())


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    torch.manual_seed(0)
    splits = load_dataset(DatasetName.DIGITS, seed=0)
    flat = FlatModel(build_model(ModelConfig("mlp", {"hidden": [64]}), (1, 8, 8), 10, 0))
    init = flat.initial_vector()
    clean = _train(flat, init, splits.train.x, splits.train.y)
    bad = _train(flat, init, *_poisoned(splits.train))
    return {"splits": splits, "flat": flat, "clean": clean, "bad": bad}


def test_the_attack_a_backdoored_model_obeys_the_trigger(world: dict[str, Any]) -> None:
    flat, test = world["flat"], world["splits"].test
    assert _obeys(flat, world["bad"], test) >= 0.9
    assert _obeys(flat, world["clean"], test) <= 0.1
    assert evaluate(flat, world["bad"], test)[1] >= 0.9  # and keeps the main task


def test_the_scan_names_the_target_of_a_backdoored_model(world: dict[str, Any]) -> None:
    cfg = SentinelConfig()
    scan = reverse_triggers(world["flat"], world["bad"], world["splits"].validation, cfg, 1)
    i = suspect(scan, cfg)
    assert i is not None and scan.classes[i] == TRIGGER.target
    assert float(scan.l1[i]) < cfg.ratio * float(scan.l1.median())


def test_the_scan_stays_quiet_on_a_clean_model(world: dict[str, Any]) -> None:
    cfg = SentinelConfig()
    scan = reverse_triggers(world["flat"], world["clean"], world["splits"].validation, cfg, 1)
    assert suspect(scan, cfg) is None


def test_the_scan_is_deterministic(world: dict[str, Any]) -> None:
    cfg = SentinelConfig(steps=20)
    val = world["splits"].validation
    a = reverse_triggers(world["flat"], world["bad"], val, cfg, 7)
    b = reverse_triggers(world["flat"], world["bad"], val, cfg, 7)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.l1, b.l1)


def test_unlearning_the_reversed_trigger_removes_the_real_one(world: dict[str, Any]) -> None:
    flat, splits, cfg = world["flat"], world["splits"], SentinelConfig()
    scan = reverse_triggers(flat, world["bad"], splits.validation, cfg, 1)
    i = suspect(scan, cfg)
    assert i is not None
    fixed = unlearn(flat, world["bad"], splits.validation, scan.masks[i], scan.patterns[i], cfg)
    assert _obeys(flat, fixed, splits.test) <= 0.2
    # its price on a model trained centrally: 3.3 points of test accuracy (95.0 -> 91.6)
    before, after = (evaluate(flat, p, splits.test)[1] for p in (world["bad"], fixed))
    assert after >= before - 0.05


def test_the_providers_whose_models_learn_the_trigger_score_highest(
    world: dict[str, Any],
) -> None:
    flat, splits = world["flat"], world["splits"]
    sentinel = BackdoorSentinel(flat, splits.validation, SentinelConfig(), seed=3)
    assert sentinel.scan(1, world["bad"]) == ""  # round 1: the initial model, no scan
    assert sentinel.scan(4, world["bad"])  # the alert, with its note
    assert sentinel.alert == TRIGGER.target
    # the round after unlearning: one local epoch from the unlearned model on 16 clean
    # shards and 4 half-poisoned ones; the poisoned providers' models learn the trigger
    start = sentinel.unlearn_round(world["bad"])
    assert _obeys(flat, start, splits.test) <= 0.2
    assert sentinel.scan(5, start) == ""
    one_epoch = LocalTrainConfig(epochs=1, batch_size=16, lr=0.1, momentum=0.9)
    rows = []
    for k, idx in enumerate(torch.arange(len(splits.train)).chunk(20)):
        part = splits.train.subset(idx)
        x, y = _poisoned(part, 0.5) if k >= 16 else (part.x, part.y)
        req = TrainRequest(start, x, y, one_epoch, k)
        rows.append(train_local(flat, [req])[0].params - start)
    senders = tuple(f"p{k}" for k in range(20))
    _, scores = sentinel.suspects(torch.stack(rows), senders)
    assert float(scores[16:].min()) > float(scores[:16].max())
    # evidence grows only for rows above the median + margin; here the push is too small
    # to ban in one round (bans need evidence > 0.3, i.e. several rounds of pushing)
    assert max(sentinel.evidence.get(s, 0.0) for s in senders[:16]) == 0.0
    # limitation, measured: after 3-15 local epochs from the unlearned model, honest
    # providers' models re-acquire the trigger response too (unlearning is shallow), which
    # is why the sentinel keeps unlearning every round while anyone pushes (docs)


def test_config_errors_are_one_clear_message() -> None:
    with pytest.raises(ConfigError, match="ratio"):
        SentinelConfig(ratio=0.0)
    with pytest.raises(ConfigError, match="steps"):
        SentinelConfig(steps=0)
    with pytest.raises(ConfigError, match="evidence"):
        SentinelConfig(evidence=-1.0)


def test_it_refuses_inputs_that_are_not_images(world: dict[str, Any]) -> None:
    flat = world["flat"]
    table = Dataset(torch.rand(10, 30), torch.zeros(10, dtype=torch.long), 2, (30,), "table")
    assert "not images" in (applicable(flat, table) or "")
    assert "empty" in (applicable(flat, table.subset([])) or "")
    with pytest.raises(ConfigError, match="cannot run"):
        BackdoorSentinel(flat, table, SentinelConfig(), 0)


def _job(sentinel: bool | None, attackers: int, rounds: int = 30) -> dict[str, Any]:
    agg: dict[str, Any] = {"rule": "default"}
    if sentinel is not None:
        agg["sentinel"] = sentinel
    nodes: list[dict[str, Any]] = [{"role": "provider", "count": 20 - attackers}]
    if attackers:
        nodes.append(
            {
                "role": "provider",
                "count": attackers,
                "attack": "backdoor",
                "attack_params": {"corner": "top_left"},
            }
        )
    return {
        "name": "sentinel",
        "seed": 0,
        "rounds": rounds,
        "model": {"name": "mlp", "hidden": [64]},
        "algorithm": {
            "name": "fedavg",
            "epochs": 5,
            "batch_size": 16,
            "lr": 0.1,
            "momentum": 0.9,
            "server_momentum": 0.9,
            "server_lr": 0.5,
        },
        "aggregation": agg,
        "data": {"dataset": "digits", "partition": "iid"},
        "nodes": [*nodes, {"role": "validator"}],
    }


def test_end_to_end_the_default_rule_alone_lets_the_backdoor_in() -> None:
    m = run_scenario(scenario(_job(False, attackers=4))).metrics
    assert m["backdoor_success"] >= 0.9


def test_end_to_end_the_sentinel_stops_it_and_says_so() -> None:
    m = run_scenario(scenario(_job(None, attackers=4))).metrics
    assert m["backdoor_success"] <= 0.05
    assert m["final_accuracy"] >= 0.85
    notes = " ".join(r.get("note", "") for r in m["rounds"])
    assert "backdoor sentinel: class 0" in notes and "left out" in notes


def test_end_to_end_no_alert_without_an_attack() -> None:
    m = run_scenario(scenario(_job(None, attackers=0, rounds=20))).metrics
    assert not any("sentinel" in r.get("note", "") for r in m["rounds"])


def test_a_required_sentinel_on_tabular_data_refuses_the_job() -> None:
    job = _job(True, attackers=0, rounds=1)
    job["data"] = {"dataset": "breast_cancer", "partition": "iid"}
    m = run_scenario(scenario(job)).metrics
    (refusal,) = m["refusals"]  # one clear message, recorded; nothing trains unprotected
    assert "backdoor sentinel cannot run: the inputs are not images" in refusal["reason"]
    assert m["train_batches"] == 0
    job["aggregation"]["sentinel"] = None  # where it can run: off here, the job runs
    assert not run_scenario(scenario(job)).metrics["refusals"]
