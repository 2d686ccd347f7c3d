from pathlib import Path

import pytest

from deai.errors import ConfigError
from deai.sim.scenario import load_scenario, parse_scenario

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


def test_examples_exist_and_validate() -> None:
    assert len(EXAMPLES) >= 4
    for path in EXAMPLES:
        load_scenario(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rounds": 0}, r"rounds: got 0: Input should be greater than or equal to 1"),
        (
            {"algorithm": {"name": "fedsgd"}},
            r"algorithm.name: got 'fedsgd'.*'parallel_sgd', 'fedavg' or 'dpsgd'",
        ),
        ({"algorithm": {"lr": -1}}, r"algorithm.lr: got -1"),
        (
            {"simulation": {"data": {"partitionn": "iid"}}},
            r"simulation.data: dataset 'digits' has no parameter\(s\) \['partitionn'\]",
        ),
        (
            {"simulation": {"data": {"dataset": "mnist"}}},
            r"unknown dataset 'mnist'; allowed: .*breast_cancer.*digits",
        ),
        (
            {"simulation": {"network": {"bandwidth_mbps": [100, 10]}}},
            r"bandwidth_mbps must be \(low, high\)",
        ),
        ({"simulation": {"nodes": [{"role": "validator"}]}}, r"at least one provider"),
        (
            {
                "simulation": {
                    "nodes": [{"role": "provider", "behaviour": "evil"}, {"role": "validator"}]
                }
            },
            r"behaviour: got 'evil'; allowed: honest, nan",
        ),
        ({"simulation": {"nodes": [{"role": "oracle"}]}}, r"simulation.nodes.0.role: got 'oracle'"),
    ],
)
def test_bad_fields_get_one_clear_message(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_scenario(data, "x.toml")


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs(path: Path) -> None:
    from deai.sim.runner import run_scenario

    s = load_scenario(path)
    s = parse_scenario({**s.model_dump(mode="json", exclude_none=True), "rounds": 2}, str(path))
    m = run_scenario(s).metrics
    assert len(m["rounds"]) >= 1
    assert 0.0 <= m["final_accuracy"] <= 1.0
