"""``deai job status``, on the standard library alone.

The command an operator runs most (in a watch loop, in scripts) is answered without
typer, rich, pydantic or httpx: argparse for the flags, ``http.client`` for the one GET,
``tomllib`` for the node URL. ``deai.cli.main`` dispatches ``deai job status ...`` here
before anything else is imported, and the Typer command of the same name
(``deai.node.cli.job_status``, for ``deai job --help`` and ``CliRunner``) calls the same
:func:`fetch_status` and :func:`render_status`, so both answer alike. The flags, help and
exit codes are those of the Typer command (0 ok, 2 for an error or bad usage);
``tests/test_cli.py`` checks the two parsers agree and pins the imports of this path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from deai.errors import ApiError, ConfigError

HELP = (
    "A job's rounds (accuracy on the requester's validation data, settlement), chain "
    "state and what each party can claim."
)


def node_url(config: Path | None, url: str | None) -> str:
    """The node URL: ``url``, else read from node.toml's [node] table (without loading
    the full config, which would import the job spec and torch)."""
    import tomllib

    if url:
        return url
    if config is None:
        raise ConfigError("give --url or --config")
    try:
        node = tomllib.loads(config.read_text()).get("node", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{config}: {e}") from None
    return str(
        node.get("public_url") or f"http://{node.get('host', '127.0.0.1')}:{node.get('port', 8700)}"
    )


def get_json(url: str, path: str, timeout_s: float) -> dict[str, Any]:
    """``GET url + path`` as JSON (no proxies from the environment, as the httpx client);
    :class:`ApiError` for a status >= 300, ``OSError`` if the node cannot be reached."""
    import http.client

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not an http(s) URL: {url!r}")
    https = parts.scheme == "https"
    conn_cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path.rstrip("/") + path, headers={"accept": "application/json"})
        r = conn.getresponse()
        text = r.read().decode("utf-8", "replace")
    except http.client.HTTPException as e:  # not an OSError: a reply that is not HTTP
        raise OSError(f"{url}: {type(e).__name__}: {e}") from None
    finally:
        conn.close()
    if r.status >= 300:
        raise ApiError(r.status, text)
    try:
        out = json.loads(text)
    except ValueError as e:
        raise ApiError(r.status, f"not JSON ({e}): {text}") from None
    if not isinstance(out, dict):
        raise ApiError(r.status, f"not a JSON object: {text}")
    return out


def fetch_status(url: str, job_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """What ``GET /v1/jobs/{id}`` reports, without the spec (long, and not for people)."""
    out = get_json(url, f"/v1/jobs/{quote(job_id, safe='')}", timeout_s)
    out.pop("spec_json", None)
    return out


def eth(wei: int | None) -> str:
    return "-" if wei is None else f"{int(wei) / 10**18:.6f} ETH"


def _num(x: Any) -> str:
    return "-" if x is None else f"{float(x):.4f}"


def render_status(out: dict[str, Any]) -> str:
    """The report as the lines ``deai job status`` prints."""
    lines = [f"job {out['job_id']}  done={out.get('done')}  model {out.get('model_hash')}"]
    chain = out.get("chain") or {}
    if chain:
        lines.append(
            f"chain job {out.get('chain_job_id')}: {chain.get('state', '?')}, round "
            f"{chain.get('round', '?')}, deposit {eth(chain.get('deposit'))}, payable "
            f"{eth(chain.get('payable_total'))}, claimed {eth(chain.get('claimed_total'))}"
            + (f"  [{chain['error']}]" if chain.get("error") else "")
        )
    lines.append("round  accuracy  loss     accepted  missing  settled  slashed")
    for r in out.get("round_reports") or []:
        st = r.get("settlement") or {}
        acc, loss = _num(r.get("accuracy")), _num(r.get("loss"))
        lines.append(
            f"{r['round']:>5}  {acc:>8}  {loss:>7}  "
            f"{len(r.get('accepted', [])):>8}  {len(r.get('missing', [])):>7}  "
            f"{st.get('settled', '-')!s:>7}  {','.join(st.get('slashed', [])) or '-'}"
        )
    claim = out.get("claimable")
    if claim:
        lines.append(f"requester can withdraw {eth(claim.get('requester_withdrawable'))}")
        for p, wei in (claim.get("providers") or {}).items():
            lines.append(f"provider {p} can claim {eth(wei)}")
        if claim.get("note"):
            lines.append(claim["note"])
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The flags of the Typer command ``deai job status`` (same names, same meaning)."""
    p = argparse.ArgumentParser(
        prog="deai job status", description=HELP, allow_abbrev=False, add_help=False
    )
    p.add_argument("--help", action="help", help="Show this message and exit.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--config", "-c", type=Path, default=None, metavar="PATH", help="node.toml")
    p.add_argument("--url", default=None, help="node URL (default: from --config)")
    p.add_argument("--json", dest="as_json", action="store_true", help="raw JSON")
    return p


def fail(text: str) -> int:
    """Print ``error: text`` to stderr (red on a terminal, as ``typer.secho``); exit 2."""
    red = sys.stderr.isatty()
    sys.stderr.write(("\x1b[31m" if red else "") + f"error: {text}" + ("\x1b[0m" if red else ""))
    sys.stderr.write("\n")
    return 2


def status_main(argv: list[str]) -> int:
    """``deai job status`` with ``argv`` after ``status``; returns the exit code."""
    p = parser()
    args = p.parse_args(argv)  # --help exits 0, bad usage exits 2 (as click does)
    try:
        url = node_url(args.config, args.url)
    except ConfigError as e:
        if args.config is None:
            p.error(str(e))  # a usage error, exit 2
        return fail(str(e))
    try:
        out = fetch_status(url, args.job_id)
    except (ApiError, ConfigError, OSError) as e:
        return fail(str(e))
    print(json.dumps(out, indent=2) if args.as_json else render_status(out))
    return 0
