"""The simulation runtime: many virtual nodes in one process.

An event queue on a virtual clock delivers messages at the times the network model gives
and fires timers. Every message is encoded with the real wire format so its byte count is
exact. Training requests are not run when a role submits them: the engine gathers all
requests and runs them as one batched computation (``deai.learning.train.train_local``),
then delivers each result after that node's simulated compute time.

Gathering is exact, not an approximation: a request's result depends only on the request,
and its completion time (submission + simulated compute time) is known when it is
submitted, because the number of examples it will process is fixed by its config. So the
engine keeps processing events until the earliest pending completion time and only then
runs everything pending at once. Requests submitted at different virtual times by
providers whose tasks arrived at different times still share one batch. The roles cannot
tell: they see the same ``NodeContext`` a deployed node gives them.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deai.learning.params import FlatModel
from deai.learning.train import TrainRequest, TrainResult, planned_samples, train_local
from deai.node.messages import Message, Update, encode
from deai.node.roles import Role
from deai.privacy.secrets import SimulatedSecrets
from deai.sim.network import FaultModel, NetworkModel


class Interceptor(Protocol):
    """A tap on the transport (the simulated adversary). ``intercept`` returns True when it
    takes the message; it may put its own on the wire later with ``Simulation.transmit``."""

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool: ...


@dataclass
class ByteCounter:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    count_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    raw_update_bytes: int = 0  # update messages as if their payloads were float32
    messages: int = 0
    dropped: int = 0

    def total(self) -> int:
        return sum(self.sent.values())


class _Ctx:
    def __init__(self, engine: Simulation, node_id: str) -> None:
        self.engine = engine
        self.node_id = node_id
        secrets_ = engine._secrets
        self._secret = functools.partial(secrets_.secret_bytes, node_id)
        self._sign = functools.partial(secrets_.sign, node_id)
        self._verify = secrets_.verify

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return self._secret(label, n)

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        return self._verify(node_id, data, signature)

    def offload(self, fn: Callable[[], Any], done: Callable[[Any, Exception | None], None]) -> None:
        """Blocking work runs at once, in virtual time, as its own event."""

        def run() -> None:
            for hook in self.engine.before_offload:
                hook(self.engine.now)
            try:
                result = fn()
            except Exception as e:  # handed to the role, as a deployed node's worker does
                done(None, e)
                return
            done(result, None)

        self.engine.schedule(self.engine.now, run)

    def now(self) -> float:
        return self.engine.now

    def send(self, to: str, msg: Message) -> None:
        self.engine.send(self.node_id, to, msg)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.engine.schedule(self.engine.now + delay_s, fn)

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None:
        samples = planned_samples(len(request.y), request.config)
        ready = self.engine.now + self.engine.network.compute_time(self.node_id, samples)
        self.engine.pending.append((ready, model, request, done))


class Simulation:
    def __init__(
        self,
        network: NetworkModel,
        faults: FaultModel | None = None,
        interceptor: Interceptor | None = None,
        master_seed: int | None = 0,
    ) -> None:
        master = (
            secrets.token_bytes(32)
            if master_seed is None
            else hashlib.sha256(f"deai/sim-master/{master_seed}".encode()).digest()
        )
        # every node's secret randomness and identity key; roles see only their own
        self._secrets = SimulatedSecrets(master)
        self.before_offload: list[Callable[[float], None]] = []  # e.g. keep chain time in step
        self.network = network
        self.faults = faults
        self.interceptor = interceptor
        self.now = 0.0
        self.nodes: dict[str, list[Role]] = {}
        self.bytes = ByteCounter()
        # (completion time, model, request, continuation)
        self.pending: list[
            tuple[float, FlatModel, TrainRequest, Callable[[TrainResult], None]]
        ] = []
        self.train_batches = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def add_node(self, node_id: str, *roles: Role) -> None:
        if node_id not in self.network.profiles:
            raise KeyError(f"node {node_id} has no link profile")
        self.nodes[node_id] = list(roles)
        for role in roles:
            role.attach(_Ctx(self, node_id))

    def schedule(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), fn))

    def send(self, src: str, dst: str, msg: Message) -> None:
        if dst not in self.nodes:
            raise KeyError(f"{src} sent {msg.kind} to unknown node {dst}")
        if self.interceptor is not None and self.interceptor.intercept(self, src, dst, msg):
            return  # taken by the simulated adversary; it transmits its own version later
        self.transmit(src, dst, msg)

    def transmit(self, src: str, dst: str, msg: Message) -> None:
        """Put a message on the simulated wire: count it, apply faults, deliver it."""
        size = len(encode(msg))
        self.bytes.sent[src] += size
        self.bytes.by_kind[msg.kind] += size
        self.bytes.count_by_kind[msg.kind] += 1
        if isinstance(msg, Update):  # what the same message would weigh uncompressed
            self.bytes.raw_update_bytes += size - len(msg.payload) + 4 * msg.dim
        self.bytes.messages += 1
        if self.faults is not None and self.faults.drops(src, dst, getattr(msg, "round", None)):
            self.bytes.dropped += 1
            return
        arrival = self.network.transfer(src, dst, size, self.now)

        def deliver() -> None:
            self.bytes.received[dst] += size
            for role in self.nodes[dst]:
                role.handle(src, msg)

        self.schedule(arrival, deliver)

    def _flush_training(self) -> None:
        batch, self.pending = self.pending, []
        by_model: dict[int, list[int]] = defaultdict(list)
        for i, (_, model, _, _) in enumerate(batch):
            by_model[id(model)].append(i)
        # one batched computation per model architecture
        groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for idx in by_model.values():
            model = batch[idx[0]][1]
            groups[(type(model.module), model.dim, tuple(model.names))].extend(idx)
        for idx in groups.values():
            model = batch[idx[0]][1]
            results = train_local(model, [batch[i][2] for i in idx])
            self.train_batches += 1
            for i, res in zip(idx, results, strict=True):
                ready, _, _, done = batch[i]
                self.schedule(ready, functools.partial(done, res))

    def run(self, until: float = float("inf"), stop: Callable[[], bool] | None = None) -> None:
        for roles in self.nodes.values():
            for role in roles:
                role.start()
        while self._queue or self.pending:
            if self.pending and (
                not self._queue or self._queue[0][0] >= min(p[0] for p in self.pending)
            ):
                self._flush_training()
                continue
            at, _, fn = heapq.heappop(self._queue)
            if at > until:
                break
            self.now = at
            fn()
            if stop is not None and stop():
                break
