"""Typer sub-apps of deployed mode, mounted by ``deai.cli`` as ``deai node``, ``deai job``
and ``deai cluster``.

* ``deai node init --config node.toml``: create the node's encrypted keystore.
* ``deai node start --config node.toml``: run the node daemon until SIGTERM.
* ``deai job submit JOB.toml --config node.toml [--nonce N]``: submit a job to your
  requester node (signed with that node's key, which only its operator holds). The nonce
  (printed first; chosen here if not given) makes the job id: resubmitting with the same
  nonce after a timeout names the same job and never pays twice.
* ``deai job status ID``: chain state, per-round accuracy on the requester's validation
  data, settlement of every round, and what each party can claim.
* ``deai job claim ID --config node.toml``: claim this node's payout (Merkle proof from
  the validators' table, checked against the chain's root first).
* ``deai job withdraw --config node.toml``: withdraw refunds owed to this node's account.
* ``deai job fetch-model ID OUT``: download a job's model by hash (checked).
* ``deai cluster up --nodes N`` / ``down`` / ``status``: a local network on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from deai.errors import DeaiError
from deai.node.status import HELP as STATUS_HELP
from deai.node.status import eth as _eth
from deai.node.status import render_status as _render_status

node_app = typer.Typer(help="Run a deployed deai node.", no_args_is_help=True)
job_app = typer.Typer(help="Submit and follow training jobs (requester).", no_args_is_help=True)
cluster_app = typer.Typer(help="A local multi-process network on loopback.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="node.toml")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="node URL (default: from --config)")]
DirOpt = Annotated[Path, typer.Option("--dir", help="cluster directory")]


def _fail(e: Exception) -> typer.Exit:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _url(config: Path | None, url: str | None) -> str:
    """The node URL: ``--url``, else read from node.toml's [node] table."""
    from deai.errors import ConfigError
    from deai.node.status import node_url

    try:
        return node_url(config, url)
    except ConfigError as e:
        if config is None:
            raise typer.BadParameter(str(e)) from None
        raise _fail(e) from None


# ------------------------------------------------------------------------------ node
@node_app.command("init")
def node_init(
    config: ConfigOpt,
    kdf_work: Annotated[int, typer.Option(help="scrypt n; lower only for throwaway keys")] = (
        2**18
    ),
) -> None:
    """Create the encrypted keystore named in node.toml (password from its source)."""
    from deai.node.config import load_node_config
    from deai.node.keystore import create_keystore

    try:
        cfg = load_node_config(config)
        path = cfg.path(cfg.node.keystore)
        address = create_keystore(path, cfg.password().read(), kdf_work=kdf_work)
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    typer.echo(f"created {path}\naddress {address}")


@node_app.command("start")
def node_start(config: ConfigOpt) -> None:
    """Run the node until SIGTERM or Ctrl-C."""
    from deai.node.daemon import main

    raise typer.Exit(main(["--config", str(config)]))


# ------------------------------------------------------------------------------- job
@job_app.command("submit")
def job_submit(
    job_file: Annotated[Path, typer.Argument(help="job.toml")],
    config: ConfigOpt,
    nonce: Annotated[
        str | None, typer.Option(help="requester nonce (same file + nonce = same job)")
    ] = None,
) -> None:
    """Submit JOB.toml to the requester node of --config; prints the nonce, then the job."""
    import secrets
    import tomllib

    from deai.node.client import NodeClient
    from deai.node.config import load_job, load_node_config
    from deai.node.keystore import load_key
    from deai.node.signing import Signer

    try:
        spec = load_job(job_file)  # fail early, locally, with the same message
        nonce = nonce or spec.nonce or secrets.token_hex(8)
        typer.echo(f"nonce {nonce} (after a timeout, resubmit with --nonce {nonce})", err=True)
        cfg = load_node_config(config)
        signer = Signer(load_key(cfg.path(cfg.node.keystore), cfg.password().read()))
        data = tomllib.loads(job_file.read_text())
        data.pop("simulation", None)
        body = json.dumps({"spec": data, "nonce": nonce, "idempotency_key": nonce})
        client = NodeClient(cfg.node.url)
        try:
            out = client.submit_job(body, signer)
        finally:
            client.close()
    except (DeaiError, httpx.HTTPError, OSError) as e:
        raise _fail(e) from None
    typer.echo(json.dumps(out, indent=2))


@job_app.command("status", help=STATUS_HELP)
def job_status(
    job_id: str,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="node.toml")] = None,
    url: UrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="raw JSON")] = False,
) -> None:
    # `deai job status` itself never comes here: deai.cli.main answers it without typer
    # (deai.node.status); this is the same command for `deai job --help` and CliRunner
    from deai.errors import ApiError, ConfigError
    from deai.node.status import fetch_status

    try:
        out = fetch_status(_url(config, url), job_id)
    except (ApiError, ConfigError, OSError) as e:
        raise _fail(e) from None
    typer.echo(json.dumps(out, indent=2) if as_json else _render_status(out))


def _chain_account(config: Path) -> tuple[Any, str]:
    """This node's ledger (signing with its key) and account, from node.toml."""
    from deai.ledger.chain import RpcChain
    from deai.ledger.client import Ledger
    from deai.ledger.types import Deployment
    from deai.node.config import load_node_config
    from deai.node.keystore import load_key

    cfg = load_node_config(config)
    if cfg.chain is None:
        raise _fail(RuntimeError(f"{config}: no [chain] section"))
    key = load_key(cfg.path(cfg.node.keystore), cfg.password().read())
    ledger = Ledger(
        RpcChain(cfg.chain.rpc_url, timeout_s=15.0), Deployment.load(cfg.path(cfg.chain.deployment))
    )
    return ledger, ledger.add_key("0x" + key.hex())


@job_app.command("claim")
def job_claim(
    job_id: str,
    config: ConfigOpt,
    url: UrlOpt = None,
) -> None:
    """Claim this node's payout for a finished job (table from the job's validators,
    checked against the chain's root before the transaction)."""
    from deai.ledger.merkle import PayoutTree
    from deai.node.client import NodeClient

    try:
        client = NodeClient(_url(config, url), timeout_s=15.0)
        try:
            report = client.job_status(job_id)
        finally:
            client.close()
        table = {str(k): int(v) for k, v in (report.get("payout_table") or {}).items()}
        chain_id = report.get("chain_job_id")
        if chain_id is None or not table:
            raise _fail(RuntimeError(f"job {job_id}: no payout table or chain job reported yet"))
        ledger, me = _chain_account(config)
        tree = PayoutTree(int(chain_id), table)
        view = ledger.job(int(chain_id))
        if tree.root != view.root:
            raise _fail(RuntimeError("the reported table does not match the chain's root"))
        owed = tree.amount(me) - ledger.claimed(int(chain_id), me)
        if owed <= 0:
            typer.echo(f"nothing to claim for {me} (table {_eth(tree.amount(me))})")
            return
        ledger.claim(me, int(chain_id), me, tree.amount(me), tree.proof(me))
    except (DeaiError, httpx.HTTPError, OSError) as e:
        raise _fail(e) from None
    typer.echo(f"claimed {_eth(owed)} for {me} (chain job {chain_id})")


@job_app.command("withdraw")
def job_withdraw(config: ConfigOpt) -> None:
    """Withdraw what the Jobs contract owes this node's account (refunds)."""
    try:
        ledger, me = _chain_account(config)
        owed = ledger.owed(me)
        if owed <= 0:
            typer.echo(f"nothing owed to {me}")
            return
        ledger.withdraw(me)
    except (DeaiError, httpx.HTTPError, OSError) as e:
        raise _fail(e) from None
    typer.echo(f"withdrew {_eth(owed)} to {me}")


@job_app.command("fetch-model")
def job_fetch_model(
    job_id: str,
    out: Annotated[Path, typer.Argument(help="output .safetensors file")],
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    url: UrlOpt = None,
) -> None:
    """Download a finished job's model by hash (checked) into a safetensors file."""
    from safetensors.torch import save_file

    from deai.job.spec import JobSpec
    from deai.learning.params import vector_from_bytes
    from deai.node.client import NodeClient
    from deai.node.roles import model_for

    try:
        client = NodeClient(_url(config, url))
        st = client.job_status(job_id)
        if not st["done"] or not st["model_hash"]:
            raise _fail(RuntimeError(f"job {job_id} has no model yet"))
        spec = JobSpec.from_json(st["spec_json"])
        params = vector_from_bytes(client.fetch(st["model_hash"]), model_for(spec).dim)
        client.close()
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    meta = {"job_id": job_id, "model_hash": st["model_hash"], "spec": st["spec_json"]}
    save_file({"params": params}, str(out), metadata=meta)
    typer.echo(f"wrote {out} ({params.numel()} parameters, sha256 {st['model_hash']})")


# --------------------------------------------------------------------------- cluster
@cluster_app.command("up")
def cluster_up(
    nodes: Annotated[int, typer.Option(help="processes: 1 requester, validators, providers")] = 5,
    validators: int = 1,
    directory: DirOpt = Path("deai-cluster"),
) -> None:
    """Start anvil, deploy the contracts and start N nodes (they keep running)."""
    from deai.node.cluster import Cluster, ClusterConfig

    try:
        cluster = Cluster.up(directory, ClusterConfig(nodes=nodes, validators=validators))
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    for n in cluster.nodes:
        typer.echo(f"{n['name']:8} {n['role']:9} {n['address']} {n['url']}")
    typer.echo(f"chain {cluster.rpc_url}; stop with `deai cluster down --dir {directory}`")


@cluster_app.command("down")
def cluster_down(directory: DirOpt = Path("deai-cluster")) -> None:
    """Stop every node (SIGTERM, then SIGKILL) and anvil."""
    from deai.node.cluster import Cluster

    try:
        codes = Cluster.load(directory).down()
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    typer.echo(json.dumps(codes))


@cluster_app.command("status")
def cluster_status(directory: DirOpt = Path("deai-cluster")) -> None:
    """Each node's role, address, URL and health."""
    from deai.node.cluster import Cluster

    try:
        rows = Cluster.load(directory).status()
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    for n in rows:
        typer.echo(f"{n['name']:8} {n['role']:9} {n['address']} {n['url']} {n['health']}")
