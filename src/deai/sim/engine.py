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
from deai.node.messages import Message, Update
from deai.node.roles import Role
from deai.privacy.secrets import SimulatedSecrets
from deai.sim.network import FaultModel, NetworkModel
from deai.sim.wire import wire_size


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

        self.engine.schedule(self.engine.now, run, self.node_id)

    def now(self) -> float:
        return self.engine.now

    def send(self, to: str, msg: Message) -> None:
        self.engine.send(self.node_id, to, msg)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.engine.schedule(self.engine.now + delay_s, fn, self.node_id)

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None:
        samples = planned_samples(request.y.shape[0], request.config)
        ready = self.engine.now + self.engine.network.compute_time(self.node_id, samples)
        self.engine.pending.append((ready, model, request, done, self.node_id))
        self.engine.training[self.node_id] += 1
        self.engine.due = min(self.engine.due, ready)


class Simulation:
    def __init__(
        self,
        network: NetworkModel,
        faults: FaultModel | None = None,
        interceptor: Interceptor | None = None,
        master_seed: int | None = 0,
        lookahead_nodes: set[str] | None = None,
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
        # (completion time, model, request, continuation, node)
        self.pending: list[
            tuple[float, FlatModel, TrainRequest, Callable[[TrainResult], None], str]
        ] = []
        self.train_batches = 0
        # runs one flush's requests for one model (deai.sim.backends: local or Ray)
        self.trainer: Callable[[FlatModel, list[TrainRequest]], list[TrainResult]] = train_local
        self.due = float("inf")  # the earliest completion time of pending training
        self.training: dict[str, int] = defaultdict(int)  # node -> its pending requests
        # nodes whose message handlers may run ahead of pending training (see run())
        self.lookahead_nodes = lookahead_nodes or set()
        self._lookahead = 0.0  # the least latency any sender has, set by run()
        self._ahead: tuple[int, int] | None = None  # (seq, sends) of the event run ahead
        self._queue: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._local: dict[int, str] = {}  # queued events of lookahead nodes: seq -> node
        # lazy nodes: built when first sent to (see deai.sim.population)
        self.lazy: dict[str, Callable[[], list[Role]]] = {}
        self.checkin: Callable[[str], list[tuple[str, Message]]] | None = None
        self.materialized = 0

    def add_node(self, node_id: str, *roles: Role) -> None:
        if node_id not in self.network.profiles:
            raise KeyError(f"node {node_id} has no link profile")
        self.nodes[node_id] = list(roles)
        for role in roles:
            role.attach(_Ctx(self, node_id))

    def schedule(self, at: float, fn: Callable[[], None], node: str | None = None) -> int:
        """Queue ``fn`` at virtual time ``at``; ``node``: the node whose event it is (its
        message delivery, timer, offloaded work or training result), None: global."""
        seq = next(self._seq)
        heapq.heappush(self._queue, (at, seq, 0, fn))
        if node is not None and node in self.lookahead_nodes:
            self._local[seq] = node
        return seq

    def after_event(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once everything due before now has run: at once, or, while the
        current event runs ahead of pending training, right after it and that training's
        continuations (an observer reading global counters reads them in time order)."""
        if self._ahead is None:
            fn()
            return
        self._defer(fn)

    def _defer(self, fn: Callable[[], None]) -> None:
        seq, k = self._ahead or (0, 0)
        self._ahead = (seq, k + 1)  # in call order, before any later event at this time
        heapq.heappush(self._queue, (self.now, seq, k + 1, fn))

    def add_lazy(self, node_id: str, factory: Callable[[], list[Role]]) -> None:
        """A node whose roles are built by ``factory`` when a message is first sent to it;
        it then receives :attr:`checkin`'s messages at once (counted, not timed)."""
        if node_id not in self.network.profiles:
            raise KeyError(f"node {node_id} has no link profile")
        self.lazy[node_id] = factory

    def _materialize(self, node_id: str) -> None:
        roles = self.lazy.pop(node_id)()
        self.add_node(node_id, *roles)
        self.materialized += 1
        for role in roles:
            role.start()
        for src, msg in self.checkin(node_id) if self.checkin is not None else ():
            size = wire_size(msg)
            self.bytes.sent[src] += size
            self.bytes.received[node_id] += size
            self.bytes.by_kind[msg.kind] += size
            self.bytes.count_by_kind[msg.kind] += 1
            self.bytes.messages += 1
            for role in roles:
                role.handle(src, msg)

    def send(self, src: str, dst: str, msg: Message) -> None:
        if dst not in self.nodes:
            if dst not in self.lazy:
                raise KeyError(f"{src} sent {msg.kind} to unknown node {dst}")
            self._materialize(dst)
        if self._ahead is not None:
            # run ahead of pending training: the send goes on the wire at this same virtual
            # time, right after this event, once training due before now has finished
            self._defer(functools.partial(self._send_now, src, dst, msg))
            return
        self._send_now(src, dst, msg)

    def _send_now(self, src: str, dst: str, msg: Message) -> None:
        if self.interceptor is not None and self.interceptor.intercept(self, src, dst, msg):
            return  # taken by the simulated adversary; it transmits its own version later
        self.transmit(src, dst, msg)

    def transmit(self, src: str, dst: str, msg: Message) -> None:
        """Put a message on the simulated wire: count it, apply faults, deliver it."""
        size = wire_size(msg)
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

        self.schedule(arrival, deliver, dst)

    def _flush_training(self) -> None:
        batch, self.pending = self.pending, []
        by_model: dict[int, list[int]] = defaultdict(list)
        for i, (_, model, _, _, _) in enumerate(batch):
            by_model[id(model)].append(i)
        # one batched computation per model architecture
        groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for idx in by_model.values():
            model = batch[idx[0]][1]
            groups[(type(model.module), model.dim, tuple(model.names))].extend(idx)
        self.training.clear()
        self.due = float("inf")
        for idx in groups.values():
            model = batch[idx[0]][1]
            results = self.trainer(model, [batch[i][2] for i in idx])
            self.train_batches += 1
            for i, res in zip(idx, results, strict=True):
                ready, _, _, done, node = batch[i]
                self.schedule(ready, functools.partial(done, res), node)

    def _can_run_ahead(self, due: float) -> bool:
        """Whether the next event may run before the training due at ``due`` finishes.

        Conservative lookahead (as in parallel discrete-event simulation): the event is an
        event of a lookahead node (a message delivery, timer or training result of a node
        whose roles touch only its own state; they read global state, such as byte
        counters, through :meth:`after_event`) with no pending training of its own, and it
        happens before ``due`` plus the least latency any sender has plus the node's own
        latency. A message sent at ``t`` from ``s`` to ``r`` arrives no earlier than
        ``t + latency(s) + latency(r)`` (:meth:`NetworkModel.transfer`), and whatever a
        training continuation (run at its own completion time, at or after ``due``) or
        anything it sets off sends, from any node, is sent at or after ``due``; so nothing
        can reach that node before the event. Its sends
        are held and put on the wire at their own virtual time, after the continuations
        due earlier. Every node therefore sees the same messages at the same virtual times,
        and every link the same transfers in the same order, as without lookahead; only
        more requests share a batch."""
        at, seq, _, _ = self._queue[0]
        node = self._local.get(seq)
        if node is None or self.training[node]:
            return False
        return at < due + self._lookahead + self.network.profiles[node].latency_s

    def run(self, until: float = float("inf"), stop: Callable[[], bool] | None = None) -> None:
        for roles in self.nodes.values():
            for role in roles:
                role.start()
        lats = [p.latency_s for p in self.network.profiles.values()]
        self._lookahead = min(lats) if lats and self.lookahead_nodes else 0.0
        while self._queue or self.pending:
            ahead = False
            if self.pending:
                due = self.due
                if not self._queue or self._queue[0][0] >= due:
                    if not self._queue or not self._can_run_ahead(due):
                        self._flush_training()
                        continue
                    ahead = True
            at, seq, _, fn = heapq.heappop(self._queue)
            if at > until:
                break
            self.now = at
            self._local.pop(seq, None)
            self._ahead = (seq, 0) if ahead else None
            try:
                fn()
            finally:
                self._ahead = None
            if stop is not None and stop():
                break
