"""Issue #20 findings 5 and 8 for the operator: a stalled chain does not freeze the HTTP
API, CLI calls do not import the heavy planes, and ``cluster down`` finds nodes
restarted by hand."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deployed_kit import build_net, job_toml

from deai.node.cluster import Cluster, _alive
from deai.node.desk import ChainReader, Submitted


class _StalledLedger:
    """A chain that does not answer (anvil stopped): every read blocks."""

    def __getattr__(self, name: str) -> Any:
        def blocked(*args: Any, **kw: Any) -> Any:
            time.sleep(3.0)
            raise RuntimeError("never answered")

        return blocked


class _StalledLink:
    ledger = _StalledLedger()

    def endpoint(self, address: str) -> None:
        return None


def test_chain_stall_does_not_block_health_or_status(tmp_path: Path) -> None:
    """Finding 5: GET /v1/jobs/{id} read the chain on the event loop; with anvil stopped it
    blocked 84 s and every /v1/health probe timed out."""

    async def run() -> None:
        net = await build_net(tmp_path, 1)
        try:
            node = net.nodes[0]
            desk = node.desk
            assert desk is not None
            got = await desk.submit(job_toml(net, rounds=1))
            job = desk.jobs[got["job_id"]]
            desk.jobs[got["job_id"]] = Submitted(job.spec, job.role, 7, job.submitted_at)
            node.link = _StalledLink()  # type: ignore[assignment]
            desk.reader = ChainReader(timeout_s=0.5)
            async with net.client(0) as c:
                status = asyncio.create_task(c.get(f"/v1/jobs/{got['job_id']}"))
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                for _ in range(5):
                    assert (await c.get("/v1/health")).status_code == 200
                health_s = (time.perf_counter() - t0) / 5
                r = await status
            assert health_s < 0.5, health_s
            assert r.status_code == 200
            assert "did not answer" in r.json()["chain"]["error"]
        finally:
            await net.close()

    asyncio.run(run())


def test_cli_reads_import_no_heavy_plane() -> None:
    """Finding 8: each CLI call took ~4 s (every plane imported at start)."""
    code = (
        "import sys\n"
        "from deai.cli import app\n"
        "import deai.node.cli, deai.node.client\n"
        "heavy = [m for m in ('torch', 'web3', 'fastapi', 'transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["job", "--help"],
        ["job", "status", "some-job", "--url", "http://127.0.0.1:9"],  # refused: exit 2
        ["node", "--help"],
    ],
)
def test_cli_command_paths_import_no_heavy_plane(argv: list[str]) -> None:
    """Finding 8 (CLI calls under 1 s): the command paths themselves, run as the `deai`
    script runs them, load neither torch nor web3 nor the node's server stack."""
    code = (
        "import sys\n"
        "from deai.cli import main\n"
        f"main({argv!r})\n"
        "heavy = ('torch', 'web3', 'fastapi', 'uvicorn', 'transformers', 'numpy')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_cluster_down_stops_a_node_restarted_by_hand(tmp_path: Path) -> None:
    """Finding 8: nodes restarted with `deai node start` escaped `deai cluster down`."""
    data = tmp_path / "node-0" / "data"
    data.mkdir(parents=True)
    # a stand-in for `deai node start --config .../node-0/node.toml` (its own session)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path / "node-0")],
        start_new_session=True,
    )
    (data / "node.pid").write_text(f"{proc.pid}\n")
    end = time.monotonic() + 10
    while not _alive(proc.pid, "node-0") and time.monotonic() < end:
        time.sleep(0.05)  # its command line shows once it runs
    cluster = Cluster(tmp_path, {"anvil": {"pid": None, "url": ""}, "nodes": [{"pid": None}]})
    cluster.save()
    cluster.stop_node(0, grace_s=5.0)
    assert proc.wait(timeout=10) is not None
