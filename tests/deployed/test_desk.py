"""Issue #20 findings 5 and 9 at the requester desk: a retried submit never creates a
second job, a chain that fails answers 503 (not a bare 500), status never blocks on the
chain, and the job id is the job file's content plus the nonce."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from deployed_kit import build_net, job_toml

from deai.errors import ChainError
from deai.node.cli import _render_status
from deai.node.desk import ChainReader, parse_submission


def test_same_file_and_nonce_name_the_same_job_and_retries_never_duplicate(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        net = await build_net(tmp_path, 2)
        try:
            desk = net.nodes[0].desk
            assert desk is not None
            text = job_toml(net, rounds=1)
            spec = json.dumps({"spec": _toml(text), "nonce": "n1", "idempotency_key": "k1"})
            a, b = await asyncio.gather(desk.submit(spec), desk.submit(spec))  # concurrent
            assert a["job_id"] == b["job_id"] and len(desk.jobs) == 1
            assert {a["already_submitted"], b["already_submitted"]} == {False, True}
            again = await desk.submit(spec)
            assert again["already_submitted"] and again["nonce"] == "n1"
            other = await desk.submit(json.dumps({"spec": _toml(text), "nonce": "n2"}))
            assert other["job_id"] != a["job_id"]  # another nonce: another job
        finally:
            await net.close()

    asyncio.run(run())


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def test_no_nonce_gets_a_fresh_one_that_the_receipt_prints() -> None:
    _, n1, _ = parse_submission('rounds = 1\nname = "x"\n')
    _, n2, _ = parse_submission('rounds = 1\nname = "x"\n')
    assert n1 != n2 and len(n1) == 16


def test_chain_reader_answers_stale_instead_of_blocking() -> None:
    async def run() -> None:
        reader = ChainReader(timeout_s=0.2)
        assert await reader.read("k", lambda: 1) == (1, None)

        def stalled() -> int:
            time.sleep(1.0)
            return 2

        t0 = time.perf_counter()
        value, why = await reader.read("k", stalled)
        assert time.perf_counter() - t0 < 0.6
        assert value == 1 and why is not None and "did not answer" in why

        def broken() -> int:
            raise ChainError("connection refused")

        await asyncio.sleep(1.0)
        value, why = await reader.read("k", broken)
        assert value in (1, 2) and why is not None and "chain error" in why

    asyncio.run(run())


def test_chain_error_on_submit_is_a_503(tmp_path: Path) -> None:
    async def run() -> None:
        net = await build_net(tmp_path, 1)
        try:
            node = net.nodes[0]

            async def failing(text: str) -> dict[str, Any]:
                raise ChainError("anvil unreachable")

            node.desk.submit = failing  # type: ignore[method-assign,union-attr]
            body = job_toml(net, rounds=1).encode()
            env = node.signer.sign(node.address, body)
            async with net.client(0) as c:
                r = await c.post("/v1/jobs", content=body, headers=env.headers())
            assert (r.status_code, r.json()["error"]) == (503, "chain_unavailable")
        finally:
            await net.close()

    asyncio.run(run())


def test_status_render_shows_accuracy_settlement_and_claims() -> None:
    out = {
        "job_id": "j-1",
        "done": True,
        "model_hash": "ab",
        "chain_job_id": 3,
        "chain": {"state": "DONE", "round": 2, "deposit": 10**18, "payable_total": 10**18},
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
    text = _render_status(out)
    assert "0.9000" in text and "DONE" in text and "0xp can claim 0.500000 ETH" in text


def test_the_committee_report_is_a_finished_validators_not_a_restarted_ones() -> None:
    """Seen in the deployed_round benchmark (#20): after the coordinator was killed and
    restarted, the requester's report came from it (first in the spec's order, not yet
    abstained: still catching up on round 2) and its table was not the chain's, so a
    claim through the requester failed. A validator that is done and did not abstain
    answers first; one still running only if none is done; an abstained one last."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deai.job.spec import Parties
    from deai.ledger.merkle import PayoutTree
    from deai.node.desk import committee_report

    pay, other = {"0x" + "1" * 40: 7}, {"0x" + "1" * 40: 5}  # the chain's table, another
    reports: dict[str, dict[str, Any]] = {
        "v0": {"validator": "v0", "done": False, "abstained": False},  # restarted, behind
        "v1": {"validator": "v1", "done": True, "abstained": True},
        "v2": {"validator": "v2", "done": True, "abstained": False},
        "v3": {"validator": "v3", "done": True, "abstained": False, "payout_table": other},
        "v4": {"validator": "v4", "done": True, "abstained": True, "payout_table": pay},
        "v5": {"validator": "v5", "done": True, "payout_table": {"x": "not wei"}},
    }
    servers: dict[str, ThreadingHTTPServer] = {}
    for name, report in reports.items():
        body = json.dumps(report).encode()

        class Handler(BaseHTTPRequestHandler):
            payload = body

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(self.payload)))
                self.end_headers()
                self.wfile.write(self.payload)

            def log_message(self, *args: object) -> None:
                return None

        servers[name] = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=servers[name].serve_forever, daemon=True).start()

    class Peers:
        def __init__(self, names: set[str]) -> None:
            self.names = names

        async def url(self, v: str) -> str | None:
            if v not in self.names:
                return None
            return f"http://127.0.0.1:{servers[v].server_address[1]}"

    from deai.job.spec import JobSpec

    names = tuple(reports)
    spec = JobSpec(parties=Parties(requester="r", providers=("p",), validators=names))

    def pick(up: set[str], root: str | None = None) -> Any:
        got = asyncio.run(committee_report(Peers(up), spec, 9, root))
        return got.get("validator")

    try:
        assert pick({"v0", "v1", "v2"}) == "v2"
        assert pick({"v0", "v1"}) == "v0"
        assert pick({"v1"}) == "v1"
        assert pick(set()) is None
        # with the chain's root known, the table that has it comes first: an outvoted
        # member's (v3) is not the chain's, an abstained one's may still be (v4)
        root = "0x" + PayoutTree(9, pay).root.hex()
        assert pick({"v3", "v4", "v5"}, root) == "v4"
        assert pick({"v3", "v5"}, root) == "v3"  # none matches: done and not abstained
        assert pick({"v5"}, root) is None  # a report whose table does not parse
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
