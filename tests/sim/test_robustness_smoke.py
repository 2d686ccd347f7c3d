"""Smoke tests of the robustness benchmark (benchmarks/robustness.py) on the real runtime.

The fast test runs one short attacked scenario through the benchmark's own code path and
checks the metrics the matrix reports; the slow one checks that the default defence
beats the plain mean under sign flipping on digits (4 of 20 providers flip their update).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deai_robustness_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


rb = _load()


def test_attacked_run_reports_matrix_metrics() -> None:
    rec = rb.run_one(rb.RunKey("0.5", 20, "backdoor_top_left", "default", 0), rounds=1)
    assert "error" not in rec
    assert 0.0 <= rec["final_accuracy"] <= 1.0
    assert 0.0 <= rec["backdoor_success"] <= 1.0
    assert len(rec["accuracy_per_round"]) == 1 and len(rec["excluded_per_round"]) == 1


def test_scenarios_match_the_issue_settings() -> None:
    s20 = rb.scenario_dict(rb.RunKey("0.1", 20, "alie", "krum", 1), rounds=20)
    assert [g.get("count") for g in s20["simulation"]["nodes"]] == [40, 10, 1]
    assert s20["aggregation"]["f"] == 10 and s20["seed"] == 1
    assert s20["simulation"]["data"] == {
        "dataset": "digits",
        "partition": "dirichlet",
        "alpha": 0.1,
    }
    s40 = rb.scenario_dict(rb.RunKey("iid", 40, "min_sum_sign_smallest", "median", 0), 20)
    assert [g.get("count") for g in s40["simulation"]["nodes"]] == [30, 20, 1]
    assert s40["simulation"]["nodes"][1]["attack_params"] == {
        "perturbation": "sign",
        "bound": "smallest",
    }
    assert s40["simulation"]["data"]["partition"] == "iid"
    mix = rb.scenario_dict(rb.RunKey("0.5", 30, "mix", "default", 0), rounds=20)
    groups = [(g.get("attack"), g["count"]) for g in mix["simulation"]["nodes"]]
    assert groups == [
        (None, 35),
        ("alie", 5),
        ("label_flip", 5),
        ("free_rider_noise", 5),
        (None, 1),
    ]
    assert "f" not in mix["aggregation"]  # the default takes no f
    clean = rb.scenario_dict(rb.RunKey("0.5", 0, rb.NO_ATTACK, "trimmed_mean", 0), rounds=20)
    assert [g.get("count") for g in clean["simulation"]["nodes"]] == [50, 1]
    assert clean["aggregation"]["f"] == 10  # configured as under the 20% attack
    for corner in rb.CORNERS:
        bd = rb.scenario_dict(rb.RunKey("0.5", 20, f"backdoor_{corner}", "mean", 0), 20)
        assert bd["simulation"]["nodes"][1]["attack_params"] == {"corner": corner}
    keys = rb.plan(3)
    assert len(keys) == len(set(keys))
    head = keys[: 8 * 3]  # no attack, FedAvg and the default, every alpha, every seed
    assert {(k.alpha, k.setting, k.aggregator) for k in head} == {
        (a, rb.NO_ATTACK, g) for a in rb.ALPHAS for g in ("mean", "default")
    }
    assert keys[8 * 3].setting == "adaptive" and keys[8 * 3].seed == 0


def _run(
    alpha: str, share: int, setting: str, agg: str, seed: int, acc: float, bd: float | None = None
) -> dict[str, Any]:
    return {
        "alpha": alpha,
        "share": share,
        "setting": setting,
        "aggregator": agg,
        "seed": seed,
        "final_accuracy": acc,
        "backdoor_success": bd,
    }


def test_headline_and_generated_docs(tmp_path: Path) -> None:
    runs = [
        _run("0.5", 0, rb.NO_ATTACK, "mean", 0, 0.92),
        _run("0.5", 0, rb.NO_ATTACK, "mean", 1, 0.94),
        _run("0.5", 0, rb.NO_ATTACK, "default", 0, 0.92),
        _run("0.1", 0, rb.NO_ATTACK, "mean", 0, 0.90),
        _run("0.1", 0, rb.NO_ATTACK, "default", 0, 0.85),
        _run("0.5", 20, "alie", "default", 0, 0.89),
        _run("0.5", 20, "adaptive", "default", 0, 0.91),
        _run("0.5", 20, "backdoor_top_left", "default", 0, 0.93, bd=0.5),
        _run("0.5", 20, "backdoor_top_right", "default", 0, 0.93, bd=0.01),
        _run("0.5", 40, "alie", "default", 0, 0.50),
        _run("iid", 0, rb.NO_ATTACK, "mean", 0, 0.95),
    ]
    h = rb.headline(rb.cells(runs), [0.97, 0.97])
    assert h["no_attack_cost_default_max"] == pytest.approx(5.0)
    assert h["worst_accuracy_drop_default_vs_clean_fedavg"] == pytest.approx(5.0)
    assert h["worst_cell_default"] == "0.1/0/none"
    assert h["worst_accuracy_drop_default_vs_clean_fedavg_40pct"] == pytest.approx(43.0)
    assert h["backdoor_success_default_max"] == pytest.approx(0.5)
    assert h["adaptive_attack_drop_default"] == pytest.approx(2.0)
    assert h["clean_fedavg_gap_to_central_points"] == pytest.approx(2.0)
    assert h["goal_met"]["no_attack_cost_at_most_2_points"] is False
    assert h["goal_met"]["adaptive_drop_at_most_3_points"] is True
    doc = {"runs": runs, "headline": h, "settings": rb.settings(20, 2, 60.0)}
    page = tmp_path / "robustness.md"
    page.write_text(f"# Title\n\nbefore\n\n{rb.START}\nold table\n{rb.END}\n\nafter\n")
    rb.write_docs(doc, page)
    text = page.read_text()
    assert "old table" not in text and text.startswith("# Title") and text.endswith("after\n")
    assert "**5.0 points** (cell 0.1/0/none)" in text and "NOT met" in text
    assert "| mean |  | 90.0¹ | 93.0 ± 12.7 | 95.0¹ |" in text
    rb.write_docs(doc, page)
    assert page.read_text() == text  # regenerating is idempotent
