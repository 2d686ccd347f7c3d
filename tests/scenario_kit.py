"""Tests write scenarios compactly: job fields at the top, and ``data``, ``nodes`` and
``network`` (the simulated world) beside them; :func:`scenario` moves those into the
``[simulation]`` table the real format has."""

from __future__ import annotations

from typing import Any

from deai.sim.scenario import Scenario, parse_scenario

SIMULATION_KEYS = ("data", "nodes", "network", "master_seed", "stake_eth")


def layout(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k not in SIMULATION_KEYS}
    sim = dict(out.pop("simulation", {}))
    for k in SIMULATION_KEYS:
        if k in d:
            sim[k] = d[k]
    if "network" in sim and "round_timeout_s" in sim["network"]:
        net = dict(sim["network"])
        out["round_timeout_s"] = net.pop("round_timeout_s")
        sim["network"] = net
    out["simulation"] = sim
    return out


def _legacy(d: dict[str, Any]) -> dict[str, Any]:
    """The old flat spellings some tests use: ``aggregator``, ``ledger``."""
    out = dict(d)
    if "aggregator" in out:
        out["aggregation"] = {"rule": out.pop("aggregator"), **out.get("aggregation", {})}
    if "ledger" in out:
        led = out.pop("ledger")
        out["settlement"] = {
            "budget_eth": led.get("budget_eth", 10.0),
            "committee": led.get("committee", 3),
        }
        if "evaluator" in led:
            out["contribution"] = {"evaluator": led["evaluator"]}
        if "stake_eth" in led:
            out["stake_eth"] = led["stake_eth"]
    return out


def scenario(d: dict[str, Any], source: str = "test") -> Scenario:
    return parse_scenario(layout(_legacy(d)), source)
