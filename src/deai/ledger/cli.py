"""``deai chain``: run a local anvil on loopback with the deai contracts deployed.

``up`` starts anvil (detached), deploys, and writes the URL, the process id and the
contract addresses to a state file (default ``.deai/chain.json``) that ``deai node`` and
the tests can read; ``down`` stops that anvil; ``status`` prints what is running.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict
from pathlib import Path

import typer

from deai.ledger.anvil import AnvilProcess
from deai.ledger.chain import RpcChain
from deai.ledger.client import Ledger
from deai.ledger.errors import ChainError
from deai.ledger.types import Deployment

app = typer.Typer(help="Local chain (anvil) with the deai contracts.", no_args_is_help=True)
STATE = Path(".deai") / "chain.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@app.command()
def up(
    port: int = typer.Option(0, help="Port on 127.0.0.1 (0: a free one)."),
    state: Path = typer.Option(STATE, help="Where to write url, pid and addresses."),
) -> None:
    """Start anvil on loopback and deploy the Registry, Jobs and Tasks contracts."""
    if state.exists():
        old = json.loads(state.read_text())
        if _alive(int(old.get("pid", 0))):
            typer.echo(f"already up: {old['url']} (pid {old['pid']}); `deai chain down` first")
            raise typer.Exit(1)
    proc = AnvilProcess(port=port or None).start()
    assert proc.proc is not None
    try:
        ledger = Ledger.deploy(RpcChain(proc.url))
    except ChainError:
        proc.stop()
        raise
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps(
            {"url": proc.url, "pid": proc.proc.pid, "deployment": asdict(ledger.deployment)},
            indent=2,
        )
    )
    typer.echo(f"anvil {proc.url} (pid {proc.proc.pid}); registry {ledger.deployment.registry}")
    typer.echo(f"state written to {state}")


@app.command()
def down(state: Path = typer.Option(STATE, help="State file written by `up`.")) -> None:
    """Stop the anvil started by `up`."""
    if not state.exists():
        typer.echo("nothing is up")
        return
    pid = int(json.loads(state.read_text())["pid"])
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    state.unlink()
    typer.echo(f"stopped pid {pid}")


@app.command()
def status(state: Path = typer.Option(STATE, help="State file written by `up`.")) -> None:
    """Show the running chain and its contracts."""
    if not state.exists():
        typer.echo("down")
        raise typer.Exit(1)
    data = json.loads(state.read_text())
    alive = _alive(int(data["pid"]))
    typer.echo(f"{'up' if alive else 'dead'}: {data['url']} (pid {data['pid']})")
    dep = Deployment(**data["deployment"])
    if alive:
        ledger = Ledger(RpcChain(data["url"]), dep)
        typer.echo(f"block {ledger.chain.block_number()}, validators {len(ledger.validators())}")
    typer.echo(json.dumps(asdict(dep), indent=2))
