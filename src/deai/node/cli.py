"""Typer sub-apps of deployed mode, mounted by ``deai.cli`` as ``deai node``, ``deai job``
and ``deai cluster``.

* ``deai node init --config node.toml``: create the node's encrypted keystore.
* ``deai node start --config node.toml``: run the node daemon until SIGTERM.
* ``deai job submit JOB.toml --config node.toml``: submit a job to your requester node
  (the request is signed with that node's key, which only its operator holds).
* ``deai job status ID`` / ``deai job fetch-model ID OUT``: read a job, download its model
  by hash (checked) into a safetensors file.
* ``deai cluster up --nodes N`` / ``down`` / ``status``: a local network on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from deai.errors import DeaiError

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
    from deai.node.config import load_node_config

    if url:
        return url
    if config is None:
        raise typer.BadParameter("give --url or --config")
    return load_node_config(config).node.url


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
) -> None:
    """Submit JOB.toml to the requester node of --config; prints the job id."""
    from deai.node.config import load_job, load_node_config
    from deai.node.http import NodeClient
    from deai.node.keystore import load_key
    from deai.node.signing import Signer

    try:
        load_job(job_file)  # fail early, locally, with the same message
        cfg = load_node_config(config)
        signer = Signer(load_key(cfg.path(cfg.node.keystore), cfg.password().read()))
        client = NodeClient(cfg.node.url)
        out = client.submit_job(job_file.read_text(), signer)
        client.close()
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    typer.echo(json.dumps(out, indent=2))


@job_app.command("status")
def job_status(
    job_id: str,
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    url: UrlOpt = None,
) -> None:
    """Print a job's status (rounds, model hash, chain state)."""
    from deai.node.http import NodeClient

    try:
        client = NodeClient(_url(config, url))
        out = client.job_status(job_id)
        client.close()
    except (DeaiError, httpx.HTTPError) as e:
        raise _fail(e) from None
    out.pop("spec_json", None)
    typer.echo(json.dumps(out, indent=2))


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
    from deai.node.http import NodeClient
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
