import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from deai.cli import app

runner = CliRunner()


def _paths(cmd: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _paths(sub, (*prefix, name))
    return out


def test_every_command_has_help() -> None:
    paths = _paths(typer.main.get_command(app))
    assert {("demo",), ("sim",), ("check",)} <= set(paths)
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, path
        assert "Usage" in res.output, path


def test_sim_writes_metrics_and_report(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["sim", "examples/synthetic_iid.toml", "--out", str(tmp_path), "--rounds", "2", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= m["final_accuracy"] <= 1.0
    assert [r["round"] for r in m["rounds"]] == [1, 2]
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 3


def test_bad_scenario_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[algorithm]\nname = "fedsgd"\n')
    res = runner.invoke(app, ["sim", str(bad)])
    assert res.exit_code == 2
    assert "algorithm.name" in res.output and "fedsgd" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_demo_runs_every_plane(tmp_path: Path) -> None:
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--rounds", "8", "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["rounds"]) == 8  # payout rules judge a provider over its rounds
    assert set(m["attackers"])  # attackers are named in the metrics and scored as attackers
    paid = {p["node"]: p["paid_wei"] for p in m["ledger"]["providers"]}
    assert all(paid[a] == 0 for a in m["attackers"]), paid  # by rule, see deai.node.payouts
    assert sum(paid.values()) > 0
    liar = [v for v in m["ledger"]["validators"] if v["liar"]]
    assert liar
    for v in m["ledger"]["validators"]:  # a minority liar never outvotes the honest
        if not v["liar"]:
            assert v["stake_after_wei"] == v["stake_before_wei"], v
    # seats are drawn by stake; a revealed lie is slashed only where the honest held
    # >= 3/4 of the round's seats (issue #13: a bare-majority split slashes nobody, so an
    # honest member outvoted by a lucky draw keeps its stake); otherwise it keeps its stake
    name = liar[0]["node"]
    punished = any(
        r["seats"].get(name, 0) > 0
        and (sum(r["seats"].values()) - r["seats"][name]) * 4 >= sum(r["seats"].values()) * 3
        for r in m["ledger"]["rounds"]
    )
    if punished:
        assert liar[0]["stake_after_wei"] < liar[0]["stake_before_wei"]
    else:
        assert liar[0]["stake_after_wei"] == liar[0]["stake_before_wei"]
    assert m["private_job"]["privacy"]["epsilon_spent"] > 0
    assert m["update_bytes"] < m["uncompressed_update_bytes"]
    html = (tmp_path / "report.html").read_text()
    for title in (
        "Settlement on chain",
        "Payouts",
        "Payout share by behaviour",
        "Private job",
        "a cheat-when-alone worker caught",
        "Attackers and faulty peers",
    ):
        assert title in html, title


# ------------------------------------------------------- the fast paths (issue #20/#19)
def test_fast_help_lists_every_command_of_the_typer_app() -> None:
    """`deai --help` is printed by deai.cli alone; its list is the Typer app's."""
    from deai.cli import COMMANDS, main

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    assert set(COMMANDS) == set(group.list_commands(ctx))  # type: ignore[attr-defined]
    for name in ("demo", "sim", "check", "job"):
        cmd = group.get_command(ctx, name)  # type: ignore[attr-defined]
        assert cmd.get_short_help_str(200) == COMMANDS[name], name
    assert main(["--help"]) == 0
    assert main([]) == 2  # as click's no_args_is_help


def test_fast_status_has_the_typer_commands_flags() -> None:
    from deai.node.status import parser

    group = typer.main.get_command(app)
    cmd = group.get_command(typer.Context(group), "job").commands["status"]  # type: ignore[attr-defined]
    typer_flags = {o for p in cmd.params for o in p.opts if o.startswith("-")}
    fast_flags = {o for a in parser()._actions for o in a.option_strings}
    assert typer_flags | {"--help"} == fast_flags
    positional = [p.name for p in cmd.params if not p.opts[0].startswith("-")]
    assert positional == ["job_id"]


class _Node:
    """A node double on a real socket: answers GET /v1/jobs/{id} from a dict."""

    def __init__(self, jobs: dict[str, dict[str, object]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                job = jobs.get(self.path.removeprefix("/v1/jobs/"))
                body = json.dumps(job if job else {"detail": "unknown job"}).encode()
                self.send_response(200 if job else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


REPORT = {
    "job_id": "j1",
    "done": True,
    "model_hash": "ab" * 32,
    "spec_json": "{}",
    "chain_job_id": 3,
    "chain": {"state": "DONE", "round": 1, "deposit": 10**18, "payable_total": 5 * 10**17},
    "round_reports": [
        {
            "round": 1,
            "accuracy": 0.9,
            "loss": 0.3,
            "accepted": ["p"],
            "missing": [],
            "settlement": {"settled": True, "slashed": []},
        }
    ],
    "claimable": {"requester_withdrawable": 0, "providers": {"0xp": 5 * 10**17}},
}


def test_fast_status_answers_as_the_typer_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deai.cli import main

    node = _Node({"j1": REPORT})
    try:
        cfg = tmp_path / "node.toml"
        cfg.write_text(f'[node]\npublic_url = "{node.url}"\n')
        for extra in ([], ["--json"]):
            assert main(["job", "status", "j1", "--config", str(cfg), *extra]) == 0
            fast = capsys.readouterr().out
            slow = runner.invoke(app, ["job", "status", "j1", "--url", node.url, *extra])
            assert slow.exit_code == 0, slow.output
            assert fast == slow.output
            if not extra:
                assert "provider 0xp can claim 0.500000 ETH" in fast
        assert "spec_json" not in fast and json.loads(fast)["chain_job_id"] == 3
        assert main(["job", "status", "nope", "--url", node.url]) == 2
        assert "HTTP 404" in capsys.readouterr().err
    finally:
        node.close()
    assert main(["job", "status", "j1"]) == 2  # neither --url nor --config: usage error
    assert main(["job", "status", "j1", "--url", node.url]) == 2  # node gone: refused
    assert "error:" in capsys.readouterr().err


def test_status_path_imports_only_the_standard_library() -> None:
    """Issue #20 (CLI calls under 1 s): `deai job status` imports no third-party package
    at all (not typer, rich, pydantic, httpx; nor torch, web3, numpy), and no deai module
    beyond deai.cli, deai.errors and deai.node.status. Pinned as a set, not a time."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from deai.cli import main\n"
        "main(['job', 'status', 'j', '--url', 'http://127.0.0.1:9'])\n"
        "main(['job', 'status', '--help'])\n"
        "third = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        " - {'deai', '_distutils_hack', 'sitecustomize', '__main__'})\n"
        "own = sorted(m for m in sys.modules if m.startswith('deai'))\n"
        "print(third, own)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == (
        "[] ['deai', 'deai.cli', 'deai.errors', 'deai.node', 'deai.node.status']"
    ), out.stdout + out.stderr


def test_help_and_import_deai_load_no_heavy_plane() -> None:
    """Issue #19 item 4: `deai --help` and `import deai` import nothing third-party."""
    import subprocess
    import sys

    code = (
        "import sys, deai\n"
        "from deai.cli import main\n"
        "main(['--help'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        " - {'deai', '_distutils_hack', 'sitecustomize', '__main__'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
