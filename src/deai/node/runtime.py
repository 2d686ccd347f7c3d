"""The deployed runtime: a :class:`~deai.node.roles.NodeContext` on asyncio, HTTP and the
wall clock.

The role objects are the simulation's, unchanged. Only what the context does differs:

* ``send`` encodes the message (the simulation's wire format), signs an envelope
  (:mod:`deai.node.signing`) and POSTs it to the peer's ``/v1/message`` in a background
  task, retrying with backoff for ``send_retry_s`` (messages to one peer keep their
  order); a message to oneself is delivered locally.
* ``call_later`` is ``loop.call_later`` on wall-clock seconds.
* ``train`` runs ``train_local(model, [request])`` in a one-thread worker pool, so the
  event loop keeps serving while a node trains, and calls ``done`` back on the loop.
* ``offload`` runs blocking work (chain calls) on a separate one-thread pool, so chain
  transactions from this node's account are serialized and never block the loop; each
  call is one short step (settlement never blocks inside a step).
* ``secret_bytes`` is the OS CSPRNG; ``sign``/``verify`` use the node's identity key
  (EIP-191 personal messages; a node id is its address).

Inbound (after the HTTP layer's header gate, :mod:`deai.node.admission`),
:meth:`NodeRuntime.receive` checks the envelope (signature, recipient, replay window),
decodes the body, refuses a round lower than one the same sender already sent for that
job (``stale_round``), refuses retriably a message for a job this node does not know
(``unknown_job``: an honest task may overtake its ``OpenJob``) and bytes over the
sender's or the job's quota, and hands the message to every role. A nonce seen before is
a re-delivery of an accepted message (a sender's retry after a lost answer): it is
answered as a duplicate and changes nothing. A nonce is recorded only once the message is
accepted or finally refused, so a retriable refusal can be retried with the same
envelope. A role's :class:`~deai.node.hooks.Rejection` (NaN, huge norm, ...) is returned
to the sender as a refusal; one an honest node causes by being late (``wrong_round``,
``duplicate``) is refused as ``late`` without a strike. Strikes are counted only against
*authenticated* senders. A peer past ``strike_limit`` is banned until restart.

Outbound, a queued message is dropped once a later round's message of the same kind went
to the same peer (``stale_dropped``): a restarted provider never trains a stale task.

Every role callback runs on the event loop thread, one at a time, so roles need no locks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import torch

from deai.errors import DeaiError, InvalidMessage
from deai.learning.params import FlatModel
from deai.learning.train import TrainRequest, TrainResult, train_local
from deai.node.admission import Admission, AdmissionConfig
from deai.node.hooks import Rejection
from deai.node.messages import (
    FinalModel,
    JobResult,
    Message,
    OpenJob,
    TrainTask,
    Update,
    decode,
    encode,
)
from deai.node.roles import Role
from deai.node.signing import (
    NO_ROUND,
    Envelope,
    RejectCode,
    Rejected,
    ReplayGuard,
    Signer,
    verify,
    verify_bytes,
)
from deai.node.store import ArtifactStore

log = logging.getLogger("deai.node")

MESSAGE_PATH = "/v1/message"


class Poster(Protocol):
    """Delivers one signed request; returns the HTTP status (raises ``httpx.HTTPError``)."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> int: ...

    async def aclose(self) -> None: ...


class HttpPoster:
    """The real transport: one pooled ``httpx.AsyncClient``."""

    def __init__(self) -> None:
        self.client = httpx.AsyncClient(
            headers={"content-type": "application/octet-stream"}, trust_env=False
        )

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> int:
        r = await self.client.post(
            url.rstrip("/") + MESSAGE_PATH, content=body, headers=dict(headers), timeout=timeout_s
        )
        return r.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


class PeerDirectory:
    """Address -> base URL: static entries, then a resolver (the chain Registry), cached."""

    def __init__(
        self,
        static: Mapping[str, str] | None = None,
        resolve: Callable[[str], str | None] | None = None,
    ) -> None:
        self.static = {k.lower(): v for k, v in (static or {}).items()}
        self.resolve = resolve
        self._cache: dict[str, str] = {}

    async def url(self, address: str) -> str | None:
        key = address.lower()
        if key in self.static:
            return self.static[key]
        if key in self._cache:
            return self._cache[key]
        if self.resolve is None:
            return None
        try:
            found = await asyncio.to_thread(self.resolve, address)
        except DeaiError as e:
            log.warning("cannot resolve %s: %s", address, e)
            return None
        if found:
            self._cache[key] = found
        return found

    def forget(self, address: str) -> None:
        self._cache.pop(address.lower(), None)


@dataclass(frozen=True)
class RuntimeConfig:
    strike_limit: int = 50  # refused authenticated messages before a peer is banned
    send_timeout_s: float = 10.0  # per HTTP attempt
    send_retry_s: float = 30.0  # give up on a send after this long
    replay_window_s: float = 120.0  # envelope timestamp tolerance
    train_delay_s: float = 0.0  # fault injection: sleep before each training request
    torch_threads: int = 1  # intra-op threads of the training worker
    max_body_bytes: int = 8 * 1024 * 1024  # per request
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)


@dataclass
class Metrics:
    """What a node measured; served at ``/v1/status`` and read by the benchmark."""

    sent: Counter[str] = field(default_factory=Counter)  # messages by kind
    received: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # inbound refusals by code
    send_failures: int = 0  # sends abandoned after retries or refused by the peer
    stale_dropped: int = 0  # queued sends dropped because a later round superseded them
    duplicates: int = 0  # inbound re-deliveries of an accepted envelope (answered, ignored)
    send_s: float = 0.0  # wall seconds spent in successful HTTP posts
    train: list[dict[str, float]] = field(default_factory=list)  # start, end, compute_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": dict(self.sent),
            "received": dict(self.received),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "refused": dict(self.refused),
            "send_failures": self.send_failures,
            "stale_dropped": self.stale_dropped,
            "duplicates": self.duplicates,
            "send_s": self.send_s,
            "train": list(self.train),
        }


InboundHook = Callable[[str, Message], None]

# a role's refusal that an honest node can cause by being slow or restarting: refused,
# never struck
NOT_OFFENCES = frozenset({"wrong_round", "duplicate"})


class NodeRuntime:
    """One node's runtime; the roles' :class:`~deai.node.roles.NodeContext`."""

    def __init__(
        self,
        signer: Signer,
        peers: PeerDirectory,
        store: ArtifactStore,
        config: RuntimeConfig | None = None,
        poster: Poster | None = None,
    ) -> None:
        self.signer = signer
        self.node_id = signer.address
        self.peers = peers
        self.store = store
        self.config = config or RuntimeConfig()
        self.poster: Poster = poster or HttpPoster()
        self.guard = ReplayGuard(self.config.replay_window_s)
        self.roles: list[Role] = []
        self.hooks: list[InboundHook] = []  # see every accepted message before the roles
        self.metrics = Metrics()
        self.strikes: Counter[str] = Counter()
        self._rounds: dict[tuple[str, str, str], int] = {}  # (sender, job, kind) -> max round
        self._latest: dict[tuple[str, str, str], int] = {}  # (to, job, kind) -> last round sent
        self.knows_job: Callable[[str], bool] | None = None  # set by the node
        self.admission = Admission(
            self.config.admission, self.config.max_body_bytes, lambda _sender: True
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="deai-train",
            initializer=torch.set_num_threads,
            initargs=(self.config.torch_threads,),
        )
        self._chain_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deai-chain")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing = False
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("runtime not started: call start() inside the event loop")
        return self._loop

    def add_role(self, role: Role) -> None:
        """Attach a role; if the runtime runs already, start it now."""
        role.attach(self)
        self.roles.append(role)
        if self._loop is not None:
            self._guarded(role.start)

    async def start(self) -> None:
        """Bind to the running loop and start every role attached so far."""
        self._loop = asyncio.get_running_loop()
        for role in list(self.roles):
            self._guarded(role.start)

    async def close(self, drain_s: float = 5.0) -> None:
        """Stop accepting work, let in-flight sends finish for ``drain_s``, then stop."""
        self._closing = True
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=drain_s)
            for t in late:
                t.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._chain_pool.shutdown(wait=False, cancel_futures=True)
        await self.poster.aclose()

    # ------------------------------------------------------------- NodeContext
    def now(self) -> float:
        return time.time()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.loop.call_later(max(0.0, delay_s), self._guarded, fn)

    def send(self, to: str, msg: Message) -> None:
        body = encode(msg)
        self.metrics.sent[msg.kind] += 1
        self.metrics.bytes_sent += len(body)
        self._archive(msg)
        if to.lower() == self.node_id.lower():
            self.loop.call_soon(self._guarded, self._dispatch, self.node_id, msg)
            return
        round_ = _round_of(msg)
        key = (to.lower(), msg.job_id, msg.kind)
        if round_ != NO_ROUND:
            self._latest[key] = max(round_, self._latest.get(key, NO_ROUND))
        env = self.signer.sign(to, body, round_)
        self._spawn(self._post(to, body, env, key))

    def offload(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any, Exception | None], None],
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        async def run() -> None:
            try:
                result = await self.loop.run_in_executor(pool or self._chain_pool, fn)
            except Exception as e:  # handed to the role, which records it
                self._guarded(done, None, e)
                return
            self._guarded(done, result, None)

        self._spawn(run())

    def compute(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run CPU work (an evaluation) in the training worker; ``done`` on the loop."""

        async def run() -> None:
            result = await self.loop.run_in_executor(self._pool, fn)
            self._guarded(done, result)

        self._spawn(run())

    def secret_bytes(self, label: str, n: int = 32) -> bytes:
        return os.urandom(n)

    def sign(self, data: bytes) -> bytes:
        return self.signer.sign_bytes(data)

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        return verify_bytes(node_id, data, signature)

    def train(
        self, model: FlatModel, request: TrainRequest, done: Callable[[TrainResult], None]
    ) -> None:
        async def run() -> None:
            start = time.time()
            if self.config.train_delay_s > 0:
                await asyncio.sleep(self.config.train_delay_s)
            t0 = time.perf_counter()
            results = await self.loop.run_in_executor(self._pool, train_local, model, [request])
            end = time.time()
            self.metrics.train.append(
                {"start": start, "end": end, "compute_s": time.perf_counter() - t0}
            )
            self._guarded(done, results[0])

        self._spawn(run())

    # -------------------------------------------------------------------- inbound
    def authenticate(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        record: bool = True,
        body_hash: bytes | None = None,
    ) -> str:
        """Verify an envelope (signature, recipient, window, nonce); return the sender."""
        env = Envelope.from_headers(headers)
        if self.strikes[env.sender] >= self.config.strike_limit:
            raise Rejected(RejectCode.BANNED, f"{env.sender} exceeded {self.config.strike_limit}")
        return verify(
            env, body, me=self.node_id, guard=self.guard, record=record, body_hash=body_hash
        )

    def receive(
        self, headers: Mapping[str, str], body: bytes, body_hash: bytes | None = None
    ) -> Message | None:
        """Accept one inbound message, or answer ``None`` for a re-delivery of one already
        accepted (a sender's retry after a lost answer: no offence), or raise
        :class:`Rejected` (and log why)."""
        try:
            env = Envelope.from_headers(headers)
            sender = self.authenticate(headers, body, record=False, body_hash=body_hash)
        except Rejected as e:
            if e.code is RejectCode.REPLAY:
                self.metrics.duplicates += 1
                return None
            self.metrics.refused[str(e.code)] += 1
            log.info("refused message (claimed sender %s): %s", headers.get("x-deai-sender"), e)
            raise
        try:
            msg = self._admit(sender, env, body)
        except Rejected as e:
            self.guard.record(env)
            self._strike(sender, e)
            raise
        self._gate_job(sender, msg, len(body))  # retriable refusals: nonce not recorded
        self.guard.record(env)
        self.metrics.received[msg.kind] += 1
        self.metrics.bytes_received += len(body)
        self._archive(msg)
        rejections = self._dispatch(sender, msg)
        offences = [r for r in rejections if r.reason not in NOT_OFFENCES]
        if rejections:
            detail = "; ".join(f"{r.reason}: {r.detail}" for r in rejections)
            if not offences:
                self.metrics.refused[str(RejectCode.LATE)] += 1
                log.info("late message from %s: %s", sender, detail)
                raise Rejected(RejectCode.LATE, detail)
            err = Rejected(RejectCode.REJECTED, detail)
            self._strike(sender, err)
            raise err
        return msg

    def _gate_job(self, sender: str, msg: Message, size: int) -> None:
        """Unknown jobs are refused (retriably: an honest task may overtake its OpenJob),
        and admitted bytes count against the sender's and the job's quotas."""
        known = self.knows_job
        if known is not None and not isinstance(msg, OpenJob) and not known(msg.job_id):
            self.metrics.refused[str(RejectCode.UNKNOWN_JOB)] += 1
            raise Rejected(RejectCode.UNKNOWN_JOB, f"no job {msg.job_id!r} on this node")
        try:
            self.admission.charge(sender, msg.job_id, size)
        except Rejected as e:
            self.metrics.refused[str(e.code)] += 1
            raise

    def _admit(self, sender: str, env: Envelope, body: bytes) -> Message:
        try:
            msg = decode(body)
        except InvalidMessage as e:
            raise Rejected(RejectCode.MALFORMED, str(e)) from None
        if _round_of(msg) != env.round:
            raise Rejected(RejectCode.MALFORMED, f"envelope round {env.round} != message round")
        if env.round != NO_ROUND:
            key = (sender, msg.job_id, msg.kind)
            high = self._rounds.get(key, NO_ROUND)
            if env.round < high:
                raise Rejected(
                    RejectCode.STALE_ROUND,
                    f"{msg.kind} for round {env.round} after round {high} from {sender}",
                )
            self._rounds[key] = env.round
        return msg

    def strike(self, sender: str, detail: str) -> None:
        """An offence found after the message was accepted (a round's batched value check
        at close): counted like one refused on arrival."""
        self._strike(sender, Rejected(RejectCode.REJECTED, detail))

    def _strike(self, sender: str, err: Rejected) -> None:
        self.strikes[sender] += 1
        self.metrics.refused[str(err.code)] += 1
        log.warning("refused message from %s: %s", sender, err)

    def _dispatch(self, sender: str, msg: Message) -> list[Rejection]:
        """Hand ``msg`` to the hooks and every role; return the roles' rejections of it."""
        for hook in self.hooks:
            hook(sender, msg)
        before = [len(getattr(r, "rejections", ())) for r in self.roles]
        errors: list[Rejection] = []
        for role in self.roles:
            try:
                role.handle(sender, msg)
            except DeaiError as e:
                errors.append(Rejection(_round_of(msg), sender, "invalid_message", str(e)))
            except Exception as e:  # a peer must never crash the node
                log.exception("role %s failed on %s from %s", type(role).__name__, msg.kind, sender)
                errors.append(Rejection(_round_of(msg), sender, "role_error", repr(e)))
        for role, n in zip(self.roles, before, strict=True):
            errors.extend(r for r in getattr(role, "rejections", [])[n:] if r.sender == sender)
        return errors

    # ------------------------------------------------------------------- outbound
    def _superseded(self, key: tuple[str, str, str], round_: int) -> bool:
        return round_ != NO_ROUND and self._latest.get(key, round_) > round_

    async def _post(self, to: str, body: bytes, env: Envelope, key: tuple[str, str, str]) -> None:
        lock = self._locks.setdefault(to.lower(), asyncio.Lock())
        async with lock:
            deadline = time.monotonic() + self.config.send_retry_s
            delay = 0.1
            while True:
                if self._superseded(key, env.round):  # a later round's message is queued
                    self.metrics.stale_dropped += 1
                    log.info("dropped stale %s for round %d to %s", key[2], env.round, to)
                    return
                url = await self.peers.url(to)
                status: int | None = None
                if url is not None:
                    t0 = time.perf_counter()
                    try:
                        status = await self.poster.post(
                            url, body, env.headers(), self.config.send_timeout_s
                        )
                    except httpx.HTTPError as e:
                        log.debug("send to %s at %s failed: %s", to, url, e)
                        self.peers.forget(to)
                    else:
                        self.metrics.send_s += time.perf_counter() - t0
                if status is not None and status < 500 and status != 429:
                    if status >= 300:
                        self.metrics.send_failures += 1
                        log.warning("%s refused our %s with HTTP %d", to, key[2], status)
                    return
                if self._closing or time.monotonic() + delay > deadline:
                    self.metrics.send_failures += 1
                    log.warning(
                        "giving up sending %s to %s after %.0f s",
                        key[2],
                        to,
                        self.config.send_retry_s,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -------------------------------------------------------------------- helpers
    def _archive(self, msg: Message) -> None:
        """Keep models and updates in the content-addressed store (served by hash)."""
        blob = None
        if isinstance(msg, TrainTask | JobResult):
            blob = msg.model
        elif isinstance(msg, Update):
            blob = msg.payload
        elif isinstance(msg, FinalModel):
            blob = msg.params
        if blob:
            try:
                self.store.put(blob)
            except DeaiError as e:
                log.warning("not archiving %s: %s", msg.kind, e)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("callback %s failed", getattr(fn, "__qualname__", fn))


def _round_of(msg: Message) -> int:
    r = getattr(msg, "round", None)
    return r if isinstance(r, int) else NO_ROUND
