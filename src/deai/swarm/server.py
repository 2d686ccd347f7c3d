"""The block server role: serves a span of blocks to clients, with sessions and receipts.

One :class:`BlockServer` is one untrusted party. It is transport-agnostic: a transport
(in-memory with a virtual clock in simulation, HTTP between processes when deployed)
authenticates the caller and hands :meth:`BlockServer.handle` the caller's address, the
call's kind and its bytes (:mod:`deai.swarm.wire`); the answer is bytes too.

Calls:

==============  ==============================================================================
kind            what
==============  ==============================================================================
``step``        an inference step of a session: rows at positions ``position..+T`` through
                blocks ``[start, end)``, appended to the session's KV cache. The first
                call (position 0) opens the session with a declared ``max_length`` and
                idle ``timeout_s``; its cache room is reserved until close or timeout. A
                position that is not the session's length is refused (``position``), so
                a replay can never run at wrong positions (Petals #587).
``forward``     stateless forward of ``[B, T, H]`` from position 0 (fine-tuning, checks)
``backward``    gradient of the span's output with respect to its input (Petals-style)
``close``       end a session, free its cache
``voucher``     the client's latest voucher, with no work (settling up)
``records_get`` the records this server knows (gossip)
``records_put`` records to merge (each validated by the book)
``info``        the server's own record and the manifest root
==============  ==============================================================================

Every answer to a compute call carries a signed :class:`~deai.swarm.receipts.Receipt`.
Payment: each call may carry the client's latest voucher; the server refuses work
(``payment_required``) once the wei it is owed beyond the best voucher exceeds its credit
window, so an unpaying client costs it at most that much.

Block choice: with no fixed ``start``, the server takes the weakest window
(:func:`~deai.swarm.routing.choose_blocks`) and :meth:`BlockServer.tick` may move it
with hysteresis (:func:`~deai.swarm.routing.rebalance_target`, a minimum interval).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import transformers
from eth_account import Account
from eth_utils import to_checksum_address
from torch import Tensor
from transformers import DynamicCache, LlamaForCausalLM

from deai.errors import ConfigError, InvalidMessage
from deai.swarm.adversary import Cheater
from deai.swarm.blocks import Span, load_span
from deai.swarm.errors import BadRequest
from deai.swarm.manifest import Manifest
from deai.swarm.receipts import NO_LEDGER, Receipt, Voucher, claims_for, rows_tree
from deai.swarm.records import RecordBook, ServerRecord, ServerState, block_proofs
from deai.swarm.routing import block_throughputs, choose_blocks, rebalance_target
from deai.swarm.wire import (
    ZERO_HASH,
    ActCodec,
    chain_hashes,
    decode_act,
    encode_act,
    pack,
    roundtrip,
    row_hashes,
    unpack,
)

KINDS = ("step", "forward", "backward", "close", "voucher", "records_get", "records_put", "info")


def default_profile() -> str:
    """Execution profile: what must match for two honest servers to agree closely."""
    attn = "sdpa"
    return f"cpu/float32/torch-{torch.__version__}/transformers-{transformers.__version__}/{attn}"


@dataclass(frozen=True)
class ServerConfig:
    n_serve: int  # how many consecutive blocks to serve
    url: str  # where clients reach this server
    start: int | None = None  # fixed first block; None = choose the weakest window
    profile: str = field(default_factory=default_profile)
    cache_token_blocks: int = 1 << 20  # KV room: sum over sessions of max_length * blocks
    max_session_length: int = 4096  # longest declared max_length accepted
    session_timeout_s: float = 60.0  # default idle timeout of a session
    max_session_timeout_s: float = 600.0  # longest timeout a client may ask for
    record_ttl_s: float = 60.0  # records expire this long after signing (Petals: 2 x 60 s)
    balance_quality: float = 0.75  # rebalance only if bottleneck rises > 1/0.75
    min_rebalance_interval_s: float = 300.0  # and not more often than this
    price_wei: int = 0  # per token-block
    credit_wei: int = 10**15  # unpaid work tolerated beyond the client's best voucher
    ledger: str = NO_LEDGER  # swarm ledger contract that vouchers and receipts name
    throughput: float | None = None  # tokens/s through one block; None = measure
    max_body_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        if self.n_serve < 1:
            raise ConfigError(f"server: n_serve must be >= 1, got {self.n_serve}")


@dataclass
class _Session:
    client: str
    start: int
    end: int
    max_length: int
    timeout_s: float
    cache: DynamicCache
    last_used: float
    length: int = 0  # positions already in the cache
    in_hash: bytes = ZERO_HASH  # input hash at position length - 1
    calls: int = 0

    @property
    def reserved(self) -> int:
        return self.max_length * (self.end - self.start)


def measure_throughput(span: Span, tokens: int = 8, repeats: int = 3) -> float:
    """Tokens per second through one block, from a timed forward of ``tokens`` tokens."""
    x = torch.zeros(1, tokens, span.hidden_size)
    one = span.sub(span.start, span.start + 1)
    with torch.no_grad():
        one(x, 0, None)
        t0 = time.perf_counter()
        for _ in range(repeats):
            one(x, 0, None)
    return tokens * repeats / max(time.perf_counter() - t0, 1e-9)


class BlockServer:
    """One server's state and logic."""

    def __init__(
        self,
        config: ServerConfig,
        model: LlamaForCausalLM,
        manifest: Manifest,
        private_key: bytes | str,
        book: RecordBook,
        clock: Callable[[], float] | None = None,
        adversary: Cheater | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.manifest = manifest
        self.root = manifest.root
        self._key = private_key
        self.address = to_checksum_address(Account.from_key(private_key).address)
        self.book = book
        self.clock = clock or time.time
        self.adversary = adversary
        self.sessions: dict[tuple[str, str], _Session] = {}
        self.reserved = 0
        self.served_units: dict[str, int] = {}  # client -> token-blocks answered
        self.vouchers: dict[str, Voucher] = {}  # client -> best voucher
        self.seq = 0
        self.state = ServerState.JOINING
        self.moved_at = -float("inf")
        self.moves = 0
        self.calls = 0
        start = config.start
        if start is None:
            start = choose_blocks(
                block_throughputs(book.live(), manifest.n_blocks, self.address), config.n_serve
            )
        self.span = self._load(start)
        self.throughput = config.throughput or measure_throughput(self.span)
        self.state = ServerState.ONLINE

    # ----------------------------------------------------------------- records
    def _load(self, start: int) -> Span:
        end = min(start + self.config.n_serve, self.manifest.n_blocks)
        return load_span(self.model, self.manifest, start, end)

    def record(self) -> ServerRecord:
        """A fresh signed record of this server (and stores it in its own book)."""
        self.seq += 1
        rec = ServerRecord(
            owner=self.address,
            url=self.config.url,
            model_root=self.root,
            start=self.span.start,
            end=self.span.end,
            throughput=float(self.throughput),
            cache_tokens_left=max(0, self.config.cache_token_blocks - self.reserved),
            state=self.state,
            profile=self.config.profile,
            seq=self.seq,
            expires_at=self.clock() + self.config.record_ttl_s,
            proofs=block_proofs(self.manifest, self.span.start, self.span.end),
        ).signed(self._key)
        self.book.accept(rec)
        return rec

    def tick(self) -> bool:
        """Housekeeping: drop idle sessions; rebalance if worth it. True if it moved."""
        self.expire_sessions()
        now = self.clock()
        if (
            now - self.moved_at < self.config.min_rebalance_interval_s
            or self.config.start is not None
        ):
            return False
        me = self.book.get(self.address) or self.record()
        target = rebalance_target(
            self.book.live(), self.manifest.n_blocks, me, self.config.balance_quality
        )
        if target is None or self.sessions:
            return False  # never move under open sessions: they would have to replay
        self.state = ServerState.JOINING
        self.span = self._load(target)
        self.state = ServerState.ONLINE
        self.moved_at = now
        self.moves += 1
        self.record()
        return True

    def best_vouchers(self) -> list[Voucher]:
        """The vouchers to redeem on chain (one per client, the highest)."""
        return [v for v in self.vouchers.values() if v.cumulative > 0]

    def shutdown(self) -> ServerRecord:
        """Announce OFFLINE (routing skips it at once, before the TTL runs out)."""
        self.state = ServerState.OFFLINE
        return self.record()

    def expire_sessions(self) -> int:
        now = self.clock()
        dead = [k for k, s in self.sessions.items() if now - s.last_used > s.timeout_s]
        for k in dead:
            self._close(k)
        return len(dead)

    def _close(self, key: tuple[str, str]) -> None:
        s = self.sessions.pop(key, None)
        if s is not None:
            self.reserved -= s.reserved

    # ----------------------------------------------------------------- calls
    def handle(self, sender: str, kind: str, body: bytes) -> bytes:
        """Answer one authenticated call; a refusal is an ``{"error": ...}`` message."""
        try:
            meta, tensors = unpack(body, self.config.max_body_bytes)
            out_meta, out_tensors = self._dispatch(to_checksum_address(sender), kind, meta, tensors)
        except BadRequest as e:
            return pack({"error": e.code, "detail": e.detail[:500]})
        except (ConfigError, InvalidMessage, ValueError, KeyError, TypeError, RuntimeError) as e:
            return pack({"error": "bad_request", "detail": f"{type(e).__name__}: {e}"[:500]})
        return pack(out_meta, out_tensors)

    def _dispatch(
        self, sender: str, kind: str, meta: dict[str, Any], tensors: dict[str, Tensor]
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        self.calls += 1
        if kind == "records_get":
            return {"records": [r.to_dict() for r in self.book.live()]}, {}
        if kind == "records_put":
            recs = [ServerRecord.from_dict(d) for d in list(meta.get("records", []))[:1000]]
            return {"accepted": self.book.merge(recs)}, {}
        if kind == "info":
            return {"record": self.record().to_dict(), "root": self.root}, {}
        if kind == "close":
            self._close((sender, str(meta.get("session", ""))))
            return {"closed": True}, {}
        if kind == "voucher":
            self._take_voucher(sender, meta.get("voucher"), check_credit=False)
            best = self.vouchers.get(sender)
            return {"cumulative": best.cumulative if best else 0}, {}
        if self.state is not ServerState.ONLINE:
            raise BadRequest("offline", "server is not serving")
        start, end = int(meta["start"]), int(meta["end"])
        if not self.span.start <= start < end <= self.span.end:
            raise BadRequest(
                "wrong_span", f"[{start}, {end}) not in [{self.span.start}, {self.span.end})"
            )
        codec = ActCodec(int(meta.get("codec", 0)))
        self._take_voucher(sender, meta.get("voucher"))
        hidden = decode_act("hidden", tensors, codec)
        self._check_hidden(hidden)
        if kind == "step":
            return self._step(sender, meta, hidden, start, end, codec)
        if kind == "forward":
            return self._forward(sender, meta, hidden, start, end, codec)
        if kind == "backward":
            grad = decode_act("grad", tensors, codec)
            if grad.shape != hidden.shape:
                raise BadRequest("malformed", "grad and hidden shapes differ")
            return self._backward(sender, meta, hidden, grad, start, end, codec)
        raise BadRequest("unknown_kind", kind)

    def _check_hidden(self, hidden: Tensor) -> None:
        if hidden.dim() != 3 or hidden.shape[-1] != self.span.hidden_size or hidden.shape[1] < 1:
            raise BadRequest("malformed", f"hidden must be [B, T, {self.span.hidden_size}]")

    def _take_voucher(self, client: str, data: object, check_credit: bool = True) -> None:
        if isinstance(data, dict):
            v = Voucher.from_dict(data)
            ok = (
                v.client == client
                and v.server == self.address
                and v.ledger == to_checksum_address(self.config.ledger)
                and v.signer() == client
            )
            if not ok:
                raise BadRequest("bad_voucher", "voucher not signed by the caller for this server")
            best = self.vouchers.get(client)
            if best is None or v.cumulative > best.cumulative:
                self.vouchers[client] = v
        owed = self.served_units.get(client, 0) * self.config.price_wei
        paid = self.vouchers[client].cumulative if client in self.vouchers else 0
        if check_credit and owed - paid > self.config.credit_wei:
            raise BadRequest("payment_required", f"owed {owed} wei, vouchers cover {paid}")

    def _run(self, span: Span, hidden: Tensor, pos: int, cache: DynamicCache | None) -> Tensor:
        with torch.no_grad():
            if self.adversary is not None:
                return self.adversary.run(span, hidden, pos, cache)
            return span(hidden, pos, cache)

    def _answer(
        self,
        client: str,
        session: str,
        call: int,
        start: int,
        end: int,
        codec: ActCodec,
        first_position: int,
        in_hashes: list[bytes],
        out: Tensor,
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        seen = roundtrip(out, codec)  # what the client will decode
        b, t, h = seen.shape
        claims = claims_for(first_position, t, in_hashes, row_hashes(seen.reshape(b * t, h)))
        receipt = Receipt(
            ledger=to_checksum_address(self.config.ledger),
            server=self.address,
            client=client,
            session=session,
            call=call,
            model_root=self.root,
            profile=self.config.profile,
            start=start,
            end=end,
            codec=int(codec),
            first_position=first_position,
            n_rows=b * t,
            rows_root="0x" + rows_tree(claims).root.hex(),
        ).signed(self._key)
        self.served_units[client] = self.served_units.get(client, 0) + receipt.units
        return {"receipt": receipt.to_dict()}, encode_act("out", out, codec)

    def _session_id(self, meta: dict[str, Any]) -> str:
        sid = str(meta.get("session", ""))
        if len(sid) != 66 or not sid.startswith("0x"):
            raise BadRequest("malformed", "session must be 0x + 32 bytes")
        return sid

    def _step(
        self,
        client: str,
        meta: dict[str, Any],
        hidden: Tensor,
        start: int,
        end: int,
        codec: ActCodec,
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        self.expire_sessions()
        sid = self._session_id(meta)
        key = (client, sid)
        position = int(meta["position"])
        if hidden.shape[0] != 1:
            raise BadRequest("malformed", "inference sessions take one sequence")
        s = self.sessions.get(key)
        if s is None:
            if position != 0:
                raise BadRequest("unknown_session", f"{sid} (expired, closed or never opened)")
            max_length = int(meta["max_length"])
            timeout = float(meta.get("timeout_s", self.config.session_timeout_s))
            if not 0 < max_length <= self.config.max_session_length:
                raise BadRequest("bad_max_length", f"{max_length}")
            if not 0 < timeout <= self.config.max_session_timeout_s:
                raise BadRequest("bad_timeout", f"{timeout}")
            need = max_length * (end - start)
            if self.reserved + need > self.config.cache_token_blocks:
                raise BadRequest("cache_full", f"need {need} token-blocks")
            s = _Session(
                client, start, end, max_length, timeout, self.span.new_cache(), self.clock()
            )
            self.sessions[key] = s
            self.reserved += need
        if (s.start, s.end) != (start, end):
            raise BadRequest("wrong_span", "a session keeps its blocks")
        if position != s.length:
            raise BadRequest("position", f"session has {s.length} positions, step at {position}")
        t = hidden.shape[1]
        if position + t > s.max_length:
            raise BadRequest("too_long", f"{position + t} > max_length {s.max_length}")
        in_hashes = chain_hashes(s.in_hash, hidden[0])
        out = self._run(self.span.sub(start, end), hidden, position, s.cache)
        s.length += t
        s.in_hash = in_hashes[-1]
        s.last_used = self.clock()
        call = s.calls
        s.calls += 1
        return self._answer(client, sid, call, start, end, codec, position, in_hashes, out)

    def _forward(
        self,
        client: str,
        meta: dict[str, Any],
        hidden: Tensor,
        start: int,
        end: int,
        codec: ActCodec,
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        sid = self._session_id(meta)
        in_hashes = [h for row in hidden for h in chain_hashes(ZERO_HASH, row)]
        out = self._run(self.span.sub(start, end), hidden, 0, None)
        return self._answer(client, sid, 0, start, end, codec, 0, in_hashes, out)

    def _backward(
        self,
        client: str,
        meta: dict[str, Any],
        hidden: Tensor,
        grad: Tensor,
        start: int,
        end: int,
        codec: ActCodec,
    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
        sid = self._session_id(meta)
        b, t, _ = hidden.shape
        whole = chain_hashes(
            ZERO_HASH, torch.cat([hidden, grad], dim=1).reshape(-1, hidden.shape[-1])
        )[-1]
        grad_in = self.span.sub(start, end).backward(hidden, grad)
        return self._answer(client, sid, 0, start, end, codec, 0, [whole] * (b * t), grad_in)


def with_url(config: ServerConfig, url: str) -> ServerConfig:
    return replace(config, url=url)
