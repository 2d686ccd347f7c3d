"""Finding (#12 review): with a codec that takes parameters the simulated adversary keyed
its codecs by name while updates name theirs with parameters on the wire, could not
decode its own nodes' updates and sent them on unchanged: every update attack silently
became honest behaviour, still reported as an attack. The attack must be applied under
every codec, and an update the adversary cannot decode must stop the run, not pass."""

from __future__ import annotations

from typing import Any

import pytest

from deai.errors import CodecError
from deai.sim import adversary
from deai.sim.runner import run_scenario
from tests.scenario_kit import scenario


def _job(attack: str | None, codec: dict[str, Any]) -> dict[str, Any]:
    flipped: dict[str, Any] = {"role": "provider", "count": 2}
    if attack is not None:
        flipped["attack"] = attack
    return {
        "name": "codec-attack",
        "seed": 3,
        "rounds": 1,
        "model": {"name": "mlp", "hidden": [16]},
        "algorithm": {"name": "fedavg", "epochs": 1, "batch_size": 32, "lr": 0.1},
        "aggregation": {"rule": "mean"},
        "codec": codec,
        "data": {"dataset": "digits", "partition": "iid"},
        "nodes": [
            {"role": "provider", "count": 4},
            flipped,
            {"role": "validator"},
        ],
    }


@pytest.mark.parametrize(
    "codec",
    [
        {"name": "quantize", "bits": 8, "error_feedback": True},
        {"name": "topk", "ratio": 0.5},
        {"name": "identity"},
    ],
)
def test_update_attack_is_applied_under_every_codec(codec: dict[str, Any]) -> None:
    honest = run_scenario(scenario(_job(None, codec))).metrics
    attacked = run_scenario(scenario(_job("sign_flip", codec))).metrics
    assert attacked["attackers"], "the run must know its attackers"
    # the same data, draw and seeds: only the two flipped updates differ
    assert attacked["final_model_hash"] != honest["final_model_hash"]
    assert attacked["final_accuracy"] < honest["final_accuracy"]


def test_an_update_the_adversary_cannot_decode_stops_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(adversary.Adversary, "_decode", lambda self, msg: None)
    job = _job("sign_flip", {"name": "quantize", "bits": 8})
    with pytest.raises(CodecError, match="would silently not be applied"):
        run_scenario(scenario(job))
