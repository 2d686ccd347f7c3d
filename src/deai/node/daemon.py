"""The node daemon: one deployed deai node as a process (``deai node start`` /
``python -m deai.node.daemon``).

:func:`main` configures logging (after every import: a library that calls
``logging.basicConfig`` on import must not silence the node), writes the pid file that
``deai cluster down`` finds, unlocks the keystore, connects to the chain and serves the
:class:`~deai.node.node.Node` under uvicorn until SIGTERM/SIGINT (graceful: in-flight
sends drain, the settlement worker finishes its current transaction).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import torch

from deai.errors import ConfigError, DeaiError
from deai.ledger.types import Deployment
from deai.node.chainlink import ChainLink
from deai.node.config import NodeConfig, load_node_config
from deai.node.keystore import load_key
from deai.node.node import Node, node_data

__all__ = ["Node", "build_node", "configure_logging", "main", "node_data", "serve"]

log = logging.getLogger("deai.node")


# ---------------------------------------------------------------------------- serve
def build_node(config: NodeConfig) -> Node:
    """Unlock the keystore, connect to the chain (if configured) and build the node."""
    key = load_key(config.path(config.node.keystore), config.password().read())
    link = None
    if config.chain is not None:
        deployment = Deployment.load(config.path(config.chain.deployment))
        link = ChainLink(config.chain.rpc_url, deployment, key)
    torch.set_num_threads(config.node.torch_threads)
    return Node(config, key, link)


def serve(node: Node) -> None:
    """Run the node's HTTP server until SIGTERM/SIGINT (uvicorn handles both gracefully)."""
    import uvicorn

    from deai.node.http import create_app

    n = node.config.node
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node),
            host=n.host,
            port=n.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler
    # that was installed before it ran; a no-op handler here makes a graceful stop exit 0
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if not server.started:
        raise ConfigError(f"node {n.name}: could not serve on {n.host}:{n.port}")


PID_FILE = "node.pid"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """deai's log configuration, applied after every import: a library that called
    ``logging.basicConfig`` on import (opacus does) must not silence the node."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("deai").setLevel(level.upper())


def write_pid_file(data_dir: Path) -> Path:
    """``data_dir/node.pid``: how ``deai cluster down`` finds a node however it started."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PID_FILE
    path.write_text(f"{os.getpid()}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deai.node.daemon")
    parser.add_argument("--config", required=True, type=Path, help="node.toml")
    parser.add_argument("--log-level", default=os.environ.get("DEAI_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    pid_file: Path | None = None
    try:
        config = load_node_config(args.config)
        pid_file = write_pid_file(config.path(config.node.data_dir))
        node = build_node(config)
        configure_logging(args.log_level)  # again: building the node imports more
        serve(node)
    except DeaiError as e:
        log.error("%s", e)
        return 2
    finally:
        if pid_file is not None and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
