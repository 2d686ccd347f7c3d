"""Run one secure-aggregation round in memory: every message goes through its
``to_bytes``/``from_bytes`` encoding (so byte counts are the wire's), and clients drop out
at chosen stages. The same client and server state machines run over the real transport
(``deai.node.secagg``), where the node's identity key signs; here each client gets an
Ed25519 identity key drawn from its own randomness.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from torch import Tensor

from deai.errors import ConfigError, PrivacyError
from deai.privacy.secagg.client import SecAggClient
from deai.privacy.secagg.crypto import RandBytes, make_randbytes
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    Message,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from deai.privacy.secagg.protocol import SecAggConfig, Signer, Stage, Verifier
from deai.privacy.secagg.server import SecAggOutput, SecAggServer

T = TypeVar("T")


class Identities:
    """Ed25519 identity keys of clients ``0..n-1`` (the in-memory stand-in for node keys):
    ``signer(u)`` signs as client u, ``verify`` checks against the registered public keys."""

    def __init__(self, n: int, seed: int | None = None) -> None:
        def key(u: int) -> bytes:
            return make_randbytes(None if seed is None else f"deai/id/{seed}/{u}".encode())(32)

        self._keys = [Ed25519PrivateKey.from_private_bytes(key(u)) for u in range(n)]
        self._public: list[Ed25519PublicKey] = [k.public_key() for k in self._keys]

    def signer(self, u: int) -> Signer:
        return self._keys[u].sign

    def verify(self, u: int, data: bytes, signature: bytes) -> bool:
        if not 0 <= u < len(self._public):
            return False
        try:
            self._public[u].verify(signature, data)
        except InvalidSignature:
            return False
        return True

    @property
    def verifier(self) -> Verifier:
        return self.verify


@dataclass(frozen=True)
class DropoutPlan:
    """Clients that go silent at a stage: they send nothing from that stage on."""

    at: Mapping[Stage, frozenset[int]] = field(default_factory=dict)

    def silent(self, stage: Stage) -> frozenset[int]:
        out: set[int] = set()
        for s, ids in self.at.items():
            if s.value <= stage.value:
                out |= ids
        return frozenset(out)

    @classmethod
    def random(cls, n: int, rate: float, stage: Stage, seed: int) -> DropoutPlan:
        """``round(rate * n)`` clients, drawn from ``seed``, drop at ``stage``."""
        if not 0 <= rate <= 1:
            raise ConfigError(f"drop-out rate must be in [0, 1], got {rate}")
        ids = np.random.default_rng(seed).choice(n, size=round(rate * n), replace=False)
        return cls({stage: frozenset(int(i) for i in ids)})


@dataclass(frozen=True)
class SecAggRun:
    output: SecAggOutput
    bytes_sent: tuple[int, ...]  # per client: bytes of every message it sent
    bytes_received: tuple[int, ...]  # per client: bytes the server sent to it
    client_seconds: tuple[float, ...]  # per client: compute time over all its stages
    server_seconds: float  # server compute time over all stages
    refused: Mapping[int, str]  # clients that refused a step (treated as dropped), and why


def run_secagg_inprocess(
    config: SecAggConfig,
    inputs: Tensor,
    dropouts: DropoutPlan | None = None,
    seed: int | None = 0,
) -> SecAggRun:
    """Run the four stages for ``inputs[n, d]`` and return the exact sum of survivors.

    ``seed=None`` draws keys from ``os.urandom``; an int makes the run reproducible.
    Raises :class:`SecAggAborted` (with the reason) when drop-outs leave fewer than ``t``
    clients at a stage or fewer than ``t`` share holders of a secret.
    """
    n = config.n_clients
    if tuple(inputs.shape) != (n, config.dim):
        raise ConfigError(f"inputs must be [{n}, {config.dim}], got {tuple(inputs.shape)}")
    plan = dropouts or DropoutPlan()
    sent, recv, ctime = [0] * n, [0] * n, [0.0] * n
    stime = [0.0]
    refused: dict[int, str] = {}

    def rand(u: int) -> RandBytes:
        if seed is None:
            return make_randbytes(None)
        return make_randbytes(hashlib.sha256(f"deai/secagg/{seed}/{u}".encode()).digest())

    ids = Identities(n, seed)
    clients = [
        SecAggClient(u, config, inputs[u], rand(u), ids.signer(u), ids.verifier) for u in range(n)
    ]
    server = SecAggServer(config, ids.verifier)

    def on_server(fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        out = fn()
        stime[0] += time.perf_counter() - t0
        return out

    def on_client(u: int, stage: Stage, fn: Callable[[], Message]) -> bytes | None:
        """Run a client step unless it has dropped; a client that refuses drops too."""
        if u in plan.silent(stage) or u in refused:
            return None
        t0 = time.perf_counter()
        try:
            msg = fn()
        except PrivacyError as e:
            refused[u] = str(e)
            return None
        finally:
            ctime[u] += time.perf_counter() - t0
        data = msg.to_bytes()
        sent[u] += len(data)
        return data

    def deliver(u: int, raw: bytes) -> bytes:
        recv[u] += len(raw)
        return raw

    for u in range(n):
        data = on_client(u, Stage.ADVERTISE_KEYS, clients[u].advertise_keys)
        if data is not None:
            on_server(partial(server.receive_advertise, AdvertiseKeys.from_bytes(data)))
    rosters = on_server(server.close_advertise)
    for u, roster in rosters.items():
        raw = deliver(u, roster.to_bytes())
        share = partial(clients[u].share_keys, KeyRoster.from_bytes(raw))
        if (data := on_client(u, Stage.SHARE_KEYS, share)) is not None:
            on_server(partial(server.receive_shares, ShareKeys.from_bytes(data)))
    bundles = on_server(server.close_shares)
    for u, bundle in bundles.items():
        raw = deliver(u, bundle.to_bytes())
        mask = partial(clients[u].masked_input, ShareBundle.from_bytes(raw))
        if (data := on_client(u, Stage.MASKED_INPUT, mask)) is not None:
            on_server(partial(server.receive_masked, MaskedInput.from_bytes(data)))
    checks = on_server(server.close_masked)
    for u, check in checks.items():
        raw = deliver(u, check.to_bytes())
        sign = partial(clients[u].consistency, ConsistencyCheck.from_bytes(raw))
        if (data := on_client(u, Stage.CONSISTENCY, sign)) is not None:
            on_server(partial(server.receive_consistency, ConsistencySignature.from_bytes(data)))
    requests = on_server(server.close_consistency)
    for u, request in requests.items():
        raw = deliver(u, request.to_bytes())
        unmask = partial(clients[u].unmask, UnmaskRequest.from_bytes(raw))
        if (data := on_client(u, Stage.UNMASKING, unmask)) is not None:
            on_server(partial(server.receive_unmask, UnmaskResponse.from_bytes(data)))
    output = on_server(server.finish)
    return SecAggRun(output, tuple(sent), tuple(recv), tuple(ctime), stime[0], refused)
