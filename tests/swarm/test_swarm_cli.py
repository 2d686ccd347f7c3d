"""``deai swarm``: every command has help; ``sim`` runs the roles with progress output."""

from __future__ import annotations

from typer.testing import CliRunner

from deai.cli import app

runner = CliRunner()


def test_every_swarm_command_has_help() -> None:
    for cmd in ("serve", "cluster", "generate", "finetune", "sim"):
        res = runner.invoke(app, ["swarm", cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, cmd


def test_sim_generates_with_progress_and_catches_a_cheater() -> None:
    res = runner.invoke(
        app,
        ["swarm", "sim", "--tokens", "3", "--spans", "0:6,0:3,3:6,0:6", "--cheater", "quantized"],
    )
    assert res.exit_code == 0, res.output
    assert "token 3/3" in res.output and "simulated" in res.output
    assert "caught ['0x" in " ".join(res.output.split())  # rich may wrap the line


def test_bad_arguments_fail_with_one_clear_message() -> None:
    res = runner.invoke(app, ["swarm", "sim", "--spans", "0-6"])
    assert res.exit_code != 0 and "spans must look like" in res.output
    res = runner.invoke(app, ["swarm", "sim", "--spans", "0:2", "--tokens", "2"])
    assert res.exit_code == 2 and "no server covers blocks [2, 6)" in res.output
    res = runner.invoke(app, ["swarm", "sim", "--cheater", "lazy"])
    assert res.exit_code != 0
