"""The client side of the node API (blocking ``httpx``), for the CLI, tests and tools.

Kept apart from :mod:`deai.node.http` so that a CLI call that only reads a node imports
neither FastAPI nor torch. ``deai job status`` does not even use it: it reads a node with
the standard library alone (:mod:`deai.node.status`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from deai.errors import ApiError
from deai.node.store import check_fetched, sha256_hex

if TYPE_CHECKING:
    from deai.node.signing import Signer

__all__ = ["ApiError", "NodeClient"]


class NodeClient:
    """The client side of this API (blocking ``httpx``), for the CLI, tests and tools."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def _json(self, r: httpx.Response) -> dict[str, Any]:
        if r.status_code >= 300:
            raise ApiError(r.status_code, r.text)
        out: dict[str, Any] = r.json()
        return out

    def health(self) -> dict[str, Any]:
        return self._json(self.http.get("/v1/health"))

    def status(self) -> dict[str, Any]:
        return self._json(self.http.get("/v1/status"))

    def job_status(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def submit_job(self, text: str, signer: Signer, recipient: str | None = None) -> dict[str, Any]:
        """Submit a job file; ``signer`` must hold the node's own key."""
        body = text.encode()
        env = signer.sign(recipient or signer.address, body)
        return self._json(self.http.post("/v1/jobs", content=body, headers=env.headers()))

    def fetch(self, digest: str) -> bytes:
        """An artifact by digest; raises :class:`HashMismatch` if the bytes do not match."""
        r = self.http.get(f"/v1/artifacts/{digest}")
        if r.status_code >= 300:
            raise ApiError(r.status_code, r.text)
        return check_fetched(digest, r.content)

    def put(self, data: bytes, signer: Signer, recipient: str) -> str:
        env = signer.sign(recipient, data)
        headers = {**env.headers(), "x-deai-digest": sha256_hex(data)}
        return str(
            self._json(self.http.put("/v1/artifacts", content=data, headers=headers))["digest"]
        )
