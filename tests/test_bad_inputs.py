"""Every bad input a user can give ``deai check`` and ``deai sim`` gets one line that names
the field (or the file), exit code 2, and no traceback; ``deai check`` refuses everything
that would fail at run time for a reason knowable from the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deai.cli import app

runner = CliRunner()

GOOD = """
name = "t"
rounds = 1
[algorithm]
steps = 1
[simulation.data]
dataset = "synthetic"
n_samples = 200
[[simulation.nodes]]
role = "provider"
count = 3
[[simulation.nodes]]
role = "validator"
"""


def _job(extra: str = "", replace: tuple[str, str] | None = None) -> str:
    """Top-level ``key = value`` lines go first, ``[tables]`` after the good scenario."""
    text = GOOD if replace is None else GOOD.replace(*replace)
    if extra.startswith("["):
        return text + "\n" + extra
    return extra + text


# (scenario text or raw bytes, text the one error line must contain)
CASES: dict[str, tuple[str | bytes, str]] = {
    "non_utf8": (b"\xff\xfe\x00rounds = 3", "not UTF-8"),
    "empty_file": ("", "empty"),
    "bad_toml": ("rounds = = 3", "not valid TOML"),
    "seed_negative": (_job("seed = -1\n"), "seed"),
    "seed_beyond_64_bits": (_job(f"seed = {2**63}\n"), "seed"),
    "count_true": (_job(replace=("count = 3", "count = true")), "simulation.nodes.0.count"),
    "typo_lists_names": (_job(replace=("[algorithm]", "[algoritm]")), "did you mean 'algorithm'"),
    "unknown_model": (
        _job('[model]\nname = "mlpp"\n'),
        "allowed: cnn, llama, logreg, mlp, smollm2_lora",
    ),
    "model_too_wide": (_job("[model]\nhidden = [100000, 100000]\n"), "hidden.0"),
    "n_samples_huge": (_job(replace=("n_samples = 200", "n_samples = 1000000000")), "n_samples"),
    "n_samples_float": (_job(replace=("n_samples = 200", "n_samples = 1e9")), "n_samples"),
    "bandwidth_brackets": (
        _job("[simulation.network]\nbandwidth_mbps = [100, 10]\n"),
        "bandwidth_mbps must be (low, high)",
    ),
    "krum_too_few": (_job('[aggregation]\nrule = "krum"\nf = 1\n'), "needs at least 5 updates"),
    "bulyan_too_few": (_job('[aggregation]\nrule = "bulyan"\nf = 1\n'), "needs at least 7"),
    "f_not_integer": (_job('[aggregation]\nrule = "krum"\nf = 2.5\n'), "f: got 2.5"),
    "f_bool": (_job('[aggregation]\nrule = "krum"\nf = true\n'), "f: got True"),
    "cnn_on_tabular": (_job('[model]\nname = "cnn"\n'), "cnn needs image input"),
    "fltrust_without_validation": (
        _job(
            '[aggregation]\nrule = "fltrust"\n',
            replace=("n_samples = 200", "n_samples = 200\nvalidation_fraction = 0"),
        ),
        "validation_fraction",
    ),
    "settlement_without_validation": (
        _job(
            "[settlement]\ncommittee = 1\n",
            replace=("n_samples = 200", "n_samples = 200\nvalidation_fraction = 0"),
        ),
        "validation_fraction",
    ),
    "label_flip_classes": (
        _job(
            replace=(
                'role = "provider"\ncount = 3',
                'role = "provider"\ncount = 3\n[[simulation.nodes]]\nrole = "provider"\n'
                'attack = "label_flip"\nattack_params = { num_classes = 10 }',
            )
        ),
        "label_flip.num_classes = 10",
    ),
    "unknown_attack": (
        _job(replace=('role = "validator"', 'role = "provider"\nattack = "flip"')),
        "unknown attack 'flip'",
    ),
    "privacy_with_robust_rule": (
        _job('[aggregation]\nrule = "median"\n[privacy]\nnoise_multiplier = 1.0\n'),
        "aggregation.rule",
    ),
    "epsilon_without_noise": (_job("[privacy]\nepsilon = 3.0\n"), "noise_multiplier"),
}


def _write(tmp: Path, content: str | bytes) -> Path:
    path = tmp / "s.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _one_clear_line(output: str, needle: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert needle in lines[0], output
    assert "Traceback" not in output


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_sim_refuse_with_one_line(case: str, tmp_path: Path) -> None:
    content, needle = CASES[case]
    path = _write(tmp_path, content)
    for cmd in (["check", str(path)], ["sim", str(path), "--out", str(tmp_path / "o")]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2, (cmd, res.output)
        _one_clear_line(res.output, needle)
        assert not (tmp_path / "o").exists()  # refused before any work


def test_paths_that_are_not_scenario_files(tmp_path: Path) -> None:
    for path, needle in ((tmp_path, "is a directory"), (tmp_path / "nope.toml", "no such")):
        for cmd in (["check", str(path)], ["sim", str(path)]):
            res = runner.invoke(app, cmd)
            assert res.exit_code == 2
            _one_clear_line(res.output, needle)


def test_out_is_checked_before_any_work(tmp_path: Path) -> None:
    good = _write(tmp_path, GOOD)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = runner.invoke(app, ["sim", str(good), "--out", str(a_file)])
    assert res.exit_code == 2
    _one_clear_line(res.output, "is not a directory")
    if os.geteuid() != 0:  # root writes anywhere: the permission case needs a normal user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        res = runner.invoke(app, ["sim", str(good), "--out", str(locked / "run")])
        assert res.exit_code == 2
        _one_clear_line(res.output, "not writable")


def test_seed_option_beyond_64_bits(tmp_path: Path) -> None:
    good = _write(tmp_path, GOOD)
    res = runner.invoke(app, ["sim", str(good), "--seed", str(2**64), "--quiet"])
    assert res.exit_code == 2
    _one_clear_line(res.output, "seed")


def test_a_good_file_passes_check(tmp_path: Path) -> None:
    res = runner.invoke(app, ["check", str(_write(tmp_path, GOOD))])
    assert res.exit_code == 0 and res.output.startswith("ok "), res.output
