"""``deai demo``: one run through every plane.

1. The main job (``scenarios/demo.toml``): robust FedAvg with attackers and faulty peers,
   compressed updates, every round settled on an embedded chain by a validator committee
   (one validator lies and is slashed), providers paid by contribution.
2. A private job (``scenarios/demo_private.toml``): DP-FedAvg with secure aggregation;
   epsilon per provider against the public model and against the aggregator.
3. A compute market (``deai.verification.market``): outsourced inference tasks, secretly
   sampled for cross-checking on chain; a lazy worker is caught and slashed.

Everything is written into one ``report.html`` and ``metrics.json``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from deai.sim.report import write_outputs
from deai.sim.runner import run_scenario
from deai.sim.scenario import Scenario, parse_scenario
from deai.sim.sections import Section, privacy_section, sections_for

Progress = Callable[[str, int, int], None]


def demo_scenario(name: str, rounds: int | None = None) -> Scenario:
    text = resources.files("deai.sim").joinpath(f"scenarios/{name}.toml").read_text()
    data = tomllib.loads(text)
    if rounds is not None:
        data["rounds"] = rounds
    return parse_scenario(data, f"{name}.toml")


def _market() -> Section:  # 12 tasks (the default is 24): the lazy worker is still caught
    from deai.verification.market import MarketConfig, market_section, run_task_market

    return market_section(run_task_market(MarketConfig(tasks=12)))


def run_demo(
    out: Path, rounds: int | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the three parts, write the report, return the metrics."""

    def bar(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda r, n: progress(stage, r, n))

    main = run_scenario(demo_scenario("demo", rounds), progress=bar("main job"))
    private = run_scenario(demo_scenario("demo_private", rounds), progress=bar("private job"))
    if progress is not None:
        progress("compute market", 0, 1)
    market = _market()
    if progress is not None:
        progress("compute market", 1, 1)
    p = private.metrics
    private_section = privacy_section(p)
    assert private_section is not None
    private_section["title"] = "Private job: DP-FedAvg with secure aggregation"
    private_section["note"] = (
        f"{p['providers']} providers, {p['algorithm']}, final accuracy "
        f"{p['final_accuracy']:.3f}. " + private_section["note"]
    )
    sections = [*sections_for(main.metrics), private_section, market]
    main.metrics["private_job"] = {
        k: p[k]
        for k in (
            "final_accuracy",
            "privacy",
            "stopped",
            "secagg_aborts",
            "total_bytes_up",
            "sim_time_s",
            "wall_time_s",
            "notes",
        )
        if k in p
    }
    main.metrics["private_job"]["epsilon_by_round"] = [r.get("epsilon") for r in p["rounds"]]
    main.metrics["task_market"] = {
        "note": market["note"],
        "columns": market["columns"],
        "rows": market["rows"],
    }
    write_outputs(main, out, sections)
    return main.metrics
