"""Find and run anvil (Foundry's local EVM node) on loopback.

Install: ``npm install --prefix .tools @foundry-rs/anvil``; the npm package ships the
binary in a platform package. :func:`find_anvil` looks in ``$DEAI_ANVIL``, ``PATH`` and
``./.tools/node_modules``, preferring the native binary over the node wrapper so that
stopping the process stops anvil itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from deai.ledger.errors import AnvilNotFound, ChainUnavailable

# anvil's default dev mnemonic yields these funded accounts; keys are public knowledge
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil(root: Path | None = None) -> Path | None:
    """The anvil binary, or ``None``. ``root`` is where ``.tools/`` is looked for
    (default: the current directory and its parents)."""
    env = os.environ.get("DEAI_ANVIL")
    if env and Path(env).is_file():
        return Path(env)
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    starts = [root] if root else [Path.cwd(), *Path.cwd().parents]
    for base in starts:
        modules = base / ".tools" / "node_modules"
        for native in sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil")):
            if os.access(native, os.X_OK):
                return native
        wrapper = modules / ".bin" / "anvil"
        if wrapper.exists():
            return wrapper
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilProcess:
    """An anvil child process on ``127.0.0.1:<port>``; use as a context manager."""

    def __init__(
        self,
        port: int | None = None,
        binary: Path | None = None,
        accounts: int = 10,
        balance_eth: int = 10_000,
        gas_limit: int = 60_000_000,
        chain_id: int = 31337,
    ) -> None:
        found = binary or find_anvil()
        if found is None:
            raise AnvilNotFound(
                "anvil not found: run `npm install --prefix .tools @foundry-rs/anvil` "
                "or set $DEAI_ANVIL"
            )
        self.binary = found
        self.port = port or free_port()
        self.args = [
            str(found),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--accounts",
            str(accounts),
            "--balance",
            str(balance_eth),
            "--gas-limit",
            str(gas_limit),
            "--chain-id",
            str(chain_id),
            "--silent",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> AnvilProcess:
        """Start anvil and wait until it answers on its port."""
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise ChainUnavailable(f"anvil exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(f"anvil did not open port {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """Terminate anvil (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
