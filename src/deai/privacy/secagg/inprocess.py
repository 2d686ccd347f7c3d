"""Run one secure-aggregation round in memory: every message goes through its
``to_bytes``/``from_bytes`` encoding (so byte counts are the wire's), and clients drop out
at chosen stages. The same client and server state machines run over the real transport.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
from torch import Tensor

from deai.errors import ConfigError, PrivacyError
from deai.privacy.secagg.client import SecAggClient
from deai.privacy.secagg.crypto import RandBytes, make_randbytes
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    KeyRoster,
    MaskedInput,
    Message,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from deai.privacy.secagg.protocol import SecAggConfig, Stage
from deai.privacy.secagg.server import SecAggOutput, SecAggServer

T = TypeVar("T")


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

    clients = [SecAggClient(u, config, inputs[u], rand(u)) for u in range(n)]
    server = SecAggServer(config)

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
    requests = on_server(server.close_masked)
    for u, request in requests.items():
        raw = deliver(u, request.to_bytes())
        unmask = partial(clients[u].unmask, UnmaskRequest.from_bytes(raw))
        if (data := on_client(u, Stage.UNMASKING, unmask)) is not None:
            on_server(partial(server.receive_unmask, UnmaskResponse.from_bytes(data)))
    output = on_server(server.finish)
    return SecAggRun(output, tuple(sent), tuple(recv), tuple(ctime), stime[0], refused)
