"""The node's HTTP API (FastAPI). The OpenAPI spec is published at ``/openapi.json``.

=======  =======================  ===========================================================
method   path                     what
=======  =======================  ===========================================================
POST     /v1/message              a signed protocol message (body: wire bytes, envelope in
                                  ``X-Deai-*`` headers, see :mod:`deai.node.signing`)
GET      /v1/artifacts/{digest}   an artifact by sha256 (the receiver re-checks the hash)
PUT      /v1/artifacts            store a signed artifact; answers its digest
GET      /v1/health               liveness
GET      /v1/status               roles, rounds, metrics, strikes
POST     /v1/jobs                 submit a job (TOML body) to a requester node; must be signed
                                  by the node's own key (the operator's CLI holds it)
GET      /v1/jobs/{job_id}        a job's status: chain state, per-round accuracy, claims
GET      /v1/jobs/{job_id}/rounds a validator's report of a job (rounds, payout table)
=======  =======================  ===========================================================

Every signed request passes :class:`BodyLimit` before any handler runs: the envelope
headers are checked and the node's admission gate (:mod:`deai.node.admission`) decides how
many body bytes it may buffer (413 above, 429 over a rate, 503 ``not_yet``/``busy`` to
retry later) before a byte is read. Refusals answer ``{"error": code, "detail": text}``;
a peer's input never produces a 500 (503 means "retry later": an unknown job, a chain
that does not answer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

from eth_utils import keccak
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deai.errors import ChainError, ConfigError
from deai.node.client import ApiError, NodeClient
from deai.node.signing import H_SENDER, RejectCode, Rejected
from deai.node.store import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    BadDigest,
    HashMismatch,
)

__all__ = ["ApiError", "BodyLimit", "NodeApi", "NodeClient", "create_app"]

OFFLOAD_HASH_BYTES = 256 * 1024  # bodies above this are hashed in a worker thread

STATUS_OF: dict[RejectCode, int] = {
    RejectCode.MALFORMED: 400,
    RejectCode.BAD_SIGNATURE: 401,
    RejectCode.WRONG_SIGNER: 401,
    RejectCode.WRONG_RECIPIENT: 421,
    RejectCode.STALE: 409,
    RejectCode.REPLAY: 409,
    RejectCode.STALE_ROUND: 409,
    RejectCode.BANNED: 403,
    RejectCode.FORBIDDEN: 403,
    RejectCode.REJECTED: 422,
    RejectCode.LATE: 409,
    RejectCode.UNKNOWN_JOB: 503,
    RejectCode.NOT_YET: 503,
    RejectCode.TOO_LARGE: 413,
    RejectCode.RATE_LIMITED: 429,
    RejectCode.QUOTA: 429,
    RejectCode.BUSY: 503,
}


class NodeApi(Protocol):
    """What the HTTP layer needs from a node (implemented by ``deai.node.node.Node``)."""

    address: str
    store: ArtifactStore
    max_body_bytes: int

    def receive(
        self, headers: Mapping[str, str], body: bytes, body_hash: bytes | None = None
    ) -> object | None: ...

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str: ...

    def gate(self, headers: Mapping[str, str], source: str, declared: int | None) -> int: ...

    def release(self, reserved: int) -> None: ...

    def status(self) -> dict[str, Any]: ...

    async def submit_job(self, sender: str, text: str) -> dict[str, Any]: ...

    async def job_status(self, job_id: str) -> dict[str, Any] | None: ...

    def store_artifact(self, sender: str, body: bytes, expected: str | None) -> str: ...

    def job_rounds(self, job_id: str) -> dict[str, Any] | None: ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail[:2000]}, status_code=status)


def refused(e: Rejected) -> JSONResponse:
    return error(STATUS_OF[e.code], str(e.code), e.detail)


async def buffered(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """Read the whole request body (413 past ``limit`` bytes), then replay it to ``app``:
    no handler sees a partial or oversized body, whatever ``Content-Length`` claimed."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await error(413, "too_large", f"request body above {limit} bytes")(scope, receive, send)
            return
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


class SizeLimit:
    """ASGI middleware for servers without signed envelopes (the swarm's): buffer at most
    ``max_bytes`` of a request body, else answer 413.

    The body is read completely here and replayed to the app, so no handler ever sees a
    partial or oversized body, and a client that lies in ``Content-Length`` gains nothing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await error(400, "malformed", "bad Content-Length")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        await buffered(self.app, scope, receive, send, self.max_bytes)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error(413, "too_large", f"request body above {self.max_bytes} bytes")(
            scope, receive, send
        )


class BodyLimit:
    """ASGI middleware: admit a request from its headers, then buffer at most what the
    admission gate allows (413 otherwise) and replay it to the app.

    A request that carries a body must carry a signed envelope; the gate sees only its
    headers, the source address and the declared length, and reserves room in the node's
    budget of unauthenticated bytes until the handler returns. So no handler sees a
    partial or oversized body, a client that lies in ``Content-Length`` gains nothing,
    and a stranger cannot make the node hold more than ``open_max_bytes`` per request.
    """

    BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

    def __init__(self, app: ASGIApp, node: NodeApi) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in self.BODY_METHODS:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or [])
        declared = raw.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await error(400, "malformed", "bad Content-Length")(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw.items()}
        if H_SENDER not in headers:
            await error(400, "malformed", "a request with a body must be signed")(
                scope, receive, send
            )
            return
        source = (scope.get("client") or ("?", 0))[0]
        try:
            limit = self.node.gate(headers, str(source), int(declared) if declared else None)
        except Rejected as e:
            await refused(e)(scope, receive, send)
            return
        try:
            await self._buffered(scope, receive, send, limit)
        finally:
            self.node.release(limit)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await buffered(self.app, scope, receive, send, limit)


_ERR = {"content": {"application/json": {"example": {"error": "code", "detail": "why"}}}}
_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_TEXT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}

Hdr = Annotated[str | None, Header()]


def create_app(node: NodeApi) -> FastAPI:
    """The FastAPI app of one node (its lifespan starts and stops the node)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await node.startup()
        try:
            yield
        finally:
            await node.shutdown()

    app = FastAPI(
        title="deai node",
        version="1",
        description="A deai node's message, artifact and status endpoints.",
        lifespan=lifespan,
    )

    async def _catching(fn: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await fn()
        except Rejected as e:
            return refused(e)
        except ChainError as e:  # the chain is down or slow: the client should retry
            return error(503, "chain_unavailable", str(e))

    @app.post(
        "/v1/message",
        status_code=202,
        openapi_extra=_BINARY_BODY,
        responses={c: _ERR for c in (400, 401, 403, 409, 413, 421, 422, 429, 503)},
    )
    async def post_message(
        request: Request,
        x_deai_sender: Hdr = None,
        x_deai_recipient: Hdr = None,
        x_deai_nonce: Hdr = None,
        x_deai_timestamp: Hdr = None,
        x_deai_round: Hdr = None,
        x_deai_signature: Hdr = None,
    ) -> Response:
        """Deliver one signed protocol message to this node's roles."""
        body = await request.body()

        async def run() -> Response:
            body_hash = None
            if len(body) > OFFLOAD_HASH_BYTES:  # ~10 ms per MB: hash it off the loop
                body_hash = await asyncio.to_thread(keccak, body)
            msg = node.receive(request.headers, body, body_hash)
            if msg is None:  # a re-delivery of a message already accepted
                return JSONResponse({"status": "duplicate"}, status_code=200)
            return JSONResponse(
                {"status": "accepted", "kind": getattr(msg, "kind", "")}, status_code=202
            )

        return await _catching(run)

    @app.get("/v1/artifacts/{digest}", responses={c: _ERR for c in (400, 404)})
    async def get_artifact(digest: str) -> Response:
        """An artifact by its sha256 hex digest; the body hashes to the digest."""
        try:
            data = node.store.get(digest)
        except BadDigest as e:
            return error(400, "malformed", str(e))
        except ArtifactNotFound as e:
            return error(404, "not_found", str(e))
        except HashMismatch as e:  # our own disk is corrupted: do not serve it
            return error(404, "not_found", str(e))
        return Response(
            data, media_type="application/octet-stream", headers={"x-deai-digest": digest}
        )

    @app.put(
        "/v1/artifacts",
        status_code=201,
        openapi_extra=_BINARY_BODY,
        responses={c: _ERR for c in (400, 401, 403, 409, 413, 421, 422, 429, 503)},
    )
    async def put_artifact(
        request: Request,
        x_deai_digest: Hdr = None,
        x_deai_sender: Hdr = None,
        x_deai_recipient: Hdr = None,
        x_deai_nonce: Hdr = None,
        x_deai_timestamp: Hdr = None,
        x_deai_round: Hdr = None,
        x_deai_signature: Hdr = None,
    ) -> Response:
        """Store a signed artifact; ``X-Deai-Digest`` (optional) must match its sha256."""
        body = await request.body()

        async def run() -> Response:
            sender = node.authenticate(request.headers, body)
            try:
                digest = node.store_artifact(sender, body, x_deai_digest)
            except (BadDigest, HashMismatch) as e:
                return error(422, "bad_digest", str(e))
            except ArtifactTooLarge as e:
                return error(413, "too_large", str(e))
            return JSONResponse({"digest": digest}, status_code=201)

        return await _catching(run)

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        """Liveness and identity."""
        return {"status": "ok", "address": node.address}

    @app.get("/v1/status")
    async def status() -> Response:
        """Roles, jobs, rounds, metrics and peer strikes."""
        return JSONResponse(json.loads(json.dumps(node.status(), default=str)))

    @app.post(
        "/v1/jobs",
        status_code=201,
        openapi_extra=_TEXT_BODY,
        responses={c: _ERR for c in (400, 401, 403, 404, 409, 413, 421, 422, 429, 503)},
    )
    async def submit_job(
        request: Request,
        x_deai_sender: Hdr = None,
        x_deai_recipient: Hdr = None,
        x_deai_nonce: Hdr = None,
        x_deai_timestamp: Hdr = None,
        x_deai_round: Hdr = None,
        x_deai_signature: Hdr = None,
    ) -> Response:
        """Submit a job (job.toml text). Only the node's own key may sign this request."""
        body = await request.body()

        async def run() -> Response:
            sender = node.authenticate(request.headers, body)
            if sender != node.address:
                raise Rejected(RejectCode.FORBIDDEN, "only this node's operator may submit jobs")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return error(400, "malformed", "job file must be UTF-8 TOML")
            try:
                return JSONResponse(await node.submit_job(sender, text), status_code=201)
            except ConfigError as e:
                return error(422, "bad_job", str(e))

        return await _catching(run)

    @app.get("/v1/jobs/{job_id}", responses={c: _ERR for c in (404, 503)})
    async def job_status(job_id: str) -> Response:
        """Status of a job submitted to this node."""
        try:
            found = await node.job_status(job_id)
        except ChainError as e:
            return error(503, "chain_unavailable", str(e))
        if found is None:
            return error(404, "not_found", f"no job {job_id!r} on this node")
        return JSONResponse(json.loads(json.dumps(found, default=str)))

    @app.get("/v1/jobs/{job_id}/rounds", responses={404: _ERR})
    async def job_rounds(job_id: str) -> Response:
        """A validator's report of a job: per-round accuracy, settlement, payout table."""
        found = node.job_rounds(job_id)
        if found is None:
            return error(404, "not_found", f"this node validates no job {job_id!r}")
        return JSONResponse(json.loads(json.dumps(found, default=str)))

    app.add_middleware(BodyLimit, node=node)
    return app
