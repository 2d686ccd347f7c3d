"""The swarm client: routes calls, checks every answer, pays by receipts.

The client holds the embeddings, final norm and LM head (:class:`~deai.swarm.blocks.
ClientParts`) and talks to block servers through a transport. Every compute call goes
through :meth:`SwarmClient.call`, which

1. attaches the client's latest voucher for that server (payment, :mod:`.receipts`);
2. sends the call; a timeout, a refusal or garbage is a :class:`ServerFailed`;
3. decodes the output and checks the signed receipt field by field, including the Merkle
   root over the row claims, which it recomputes from the rows it sent and received; a
   bad receipt is a failure of that server, never accepted;
4. books the receipt (tally, RTT, reputation) and returns the output.

Failures ban the server with back-off (:class:`~deai.swarm.routing.BanList`) and lower
its reputation, which scales its routing cost. Generation sessions live in
:mod:`deai.swarm.session`; fine-tuning calls (stateless forward and backward, int8 on the
wire) are here; sampled re-execution checks are in :mod:`deai.swarm.checks`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from eth_account import Account
from eth_utils import to_checksum_address
from torch import Tensor

from deai.errors import InvalidMessage
from deai.swarm.blocks import ClientParts
from deai.swarm.errors import BadRequest, MissingBlocks, ServerFailed, SwarmError
from deai.swarm.manifest import Manifest
from deai.swarm.receipts import NO_LEDGER, Receipt, RowClaim, Tally, claims_for, rows_tree
from deai.swarm.records import RecordBook, ServerRecord
from deai.swarm.routing import BanList, Hop, latency_route, throughput_route
from deai.swarm.transport import Transport
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


@dataclass(frozen=True)
class ClientConfig:
    call_timeout_s: float = 30.0  # a call slower than this fails
    session_timeout_s: float = 60.0  # idle timeout asked of servers
    max_recoveries: int = 8  # re-routes allowed per session step or training call
    inference_codec: ActCodec = ActCodec.FLOAT32  # lossless: greedy output = local
    training_codec: ActCodec = ActCodec.INT8_BLOCKWISE  # activations and gradients
    ban_base_s: float = 1.0  # first ban; doubles per strike
    ban_max_s: float = 300.0
    profile: str | None = None  # only use servers of this execution profile
    session_check_rate: float = 0.0  # share of sessions re-executed in full at close
    call_check_rate: float = 0.0  # share of stateless forward calls re-executed
    tol_ppb: int = 500_000  # relative tolerance, parts per billion (deai.swarm.verify)
    seed: int = 0  # the client's private seed: check draws, routing draws, session ids
    refresh_s: float = 20.0  # pull records again when the last pull is older than this
    ledger: str = NO_LEDGER


class Reputation:
    """Client-local score in (0, 1] per server: halves on a failure, creeps back on success,
    0 once caught cheating. Routing divides costs by it."""

    def __init__(self) -> None:
        self._score: dict[str, float] = {}

    def __call__(self, owner: str) -> float:
        return self._score.get(owner, 1.0)

    def ok(self, owner: str) -> None:
        r = self(owner)
        if r > 0:
            self._score[owner] = min(1.0, r + 0.1 * (1.0 - r))

    def failed(self, owner: str) -> None:
        self._score[owner] = self(owner) * 0.5

    def caught(self, owner: str) -> None:
        self._score[owner] = 0.0


@dataclass
class CallLog:
    """One accepted call, kept for payment and for checks."""

    hop: Hop
    kind: str  # "step" or "forward"
    receipt: Receipt
    claims: list[RowClaim]
    inputs: Tensor  # [B, T, H] as the server decoded them
    outputs: Tensor  # [B, T, H] as the client decoded them
    codec: ActCodec


@dataclass
class Trace:
    """What a training forward leaves for its backward."""

    steps: list[tuple[Hop, Tensor]] = field(default_factory=list)  # (hop, its input)


class SwarmClient:
    def __init__(
        self,
        manifest: Manifest,
        parts: ClientParts,
        private_key: bytes | str,
        transport: Transport,
        book: RecordBook,
        config: ClientConfig | None = None,
        bootstrap: list[tuple[str, str]] | None = None,
        price_wei: int = 0,
    ) -> None:
        self.manifest = manifest
        self.root = manifest.root
        self.parts = parts
        self._key = private_key
        self.address = to_checksum_address(Account.from_key(private_key).address)
        self.transport = transport
        self.book = book
        self.config = config or ClientConfig()
        self.bootstrap = list(bootstrap or [])
        self.bans = BanList(transport.clock, self.config.ban_base_s, self.config.ban_max_s)
        self.reputation = Reputation()
        self.rtt: dict[str, float] = {}
        self.tally = Tally(
            to_checksum_address(self.config.ledger), self.address, private_key, price_wei
        )
        self.rng = random.Random(self.config.seed)  # private: never derived from public data
        self.np_rng = np.random.default_rng(self.config.seed + 1)
        self.failures: list[tuple[float, str, str]] = []  # (time, server, code)
        self.refreshed_at = -float("inf")
        self.recoveries = 0
        from deai.swarm.checks import Checker

        self.checker = Checker(self)

    # ------------------------------------------------------------ records
    def refresh(self) -> int:
        """Pull records from bootstrap peers and known servers; return how many were new."""
        self.refreshed_at = self.transport.clock()
        peers = dict(self.bootstrap)
        peers.update({r.owner: r.url for r in self.book.live()})
        new = 0
        for owner, url in peers.items():
            try:
                body = self.transport.call(
                    owner, url, "records_get", pack({}), self.config.call_timeout_s
                )
                meta, _ = unpack(body)
                if "error" in meta:
                    continue
                recs = []
                for d in list(meta.get("records", []))[:1000]:
                    try:
                        recs.append(ServerRecord.from_dict(d))
                    except InvalidMessage:
                        continue
                new += self.book.merge(recs)
            except ServerFailed:
                continue
        return new

    def records(self) -> list[ServerRecord]:
        if self.transport.clock() - self.refreshed_at > self.config.refresh_s:
            self.refresh()
        recs = self.book.live()
        if self.config.profile is not None:
            recs = [r for r in recs if r.profile == self.config.profile]
        return recs

    def _rtt(self, owner: str) -> float:
        return self.rtt.get(owner, 0.05)

    def route_generation(
        self, start: int, end: int, max_length: int, exclude: set[str] | None = None
    ) -> list[Hop]:
        return latency_route(
            self.records(),
            start,
            end,
            rtt=self._rtt,
            reputation=self.reputation,
            exclude=(exclude or set()) | self.bans.banned(),
            max_length=max_length,
        )

    def route_training(self, start: int, end: int, exclude: set[str] | None = None) -> list[Hop]:
        return throughput_route(
            self.records(),
            start,
            end,
            rng=self.rng,
            reputation=self.reputation,
            exclude=(exclude or set()) | self.bans.banned(),
        )

    def new_session_id(self) -> str:
        return "0x" + self.rng.getrandbits(256).to_bytes(32, "big").hex()

    def record_of(self, owner: str) -> ServerRecord | None:
        return self.book.get(owner)

    # ------------------------------------------------------------ one call
    def failed(self, owner: str, err: ServerFailed) -> None:
        """Book a failure: ban with back-off and lower reputation. An expired session
        (``unknown_session``) is the client's idleness, not the server's fault: the
        server may be chosen again for the replay (bounded by ``max_recoveries``)."""
        self.failures.append((self.transport.clock(), owner, err.code))
        self.reputation.failed(owner)
        if err.code != "unknown_session":
            self.bans.ban(owner, err.code)

    def call(
        self,
        hop: Hop,
        kind: str,
        meta: dict[str, Any],
        tensors: dict[str, Tensor],
        codec: ActCodec,
        in_hashes: list[bytes],
        call_index: int = 0,
        first_position: int = 0,
    ) -> tuple[Tensor, Receipt, list[RowClaim]]:
        """One compute call with its receipt checked; raises :class:`ServerFailed`."""
        voucher = self.tally.voucher(hop.owner)
        meta = {**meta, "start": hop.start, "end": hop.end, "codec": int(codec)}
        if voucher is not None:
            meta["voucher"] = voucher.to_dict()
        body = pack(meta, tensors)
        t0 = self.transport.clock()
        answer = self.transport.call(hop.owner, hop.url, kind, body, self.config.call_timeout_s)
        elapsed = self.transport.clock() - t0
        try:
            out_meta, out_tensors = unpack(answer)
            if "error" in out_meta:
                raise ServerFailed(
                    hop.owner, str(out_meta["error"]), str(out_meta.get("detail", ""))
                )
            out = decode_act("out", out_tensors, codec)
            receipt = Receipt.from_dict(dict(out_meta["receipt"]))
        except (BadRequest, InvalidMessage, KeyError, TypeError, ValueError) as e:
            raise ServerFailed(hop.owner, "bad_response", str(e)) from e
        expect_shape = tuple(
            tensors["hidden"].shape if "hidden" in tensors else tensors["hidden.shape"].tolist()
        )
        if tuple(out.shape) != expect_shape:
            raise ServerFailed(hop.owner, "bad_response", f"output shape {tuple(out.shape)}")
        b, t, h = out.shape
        claims = claims_for(first_position, t, in_hashes, row_hashes(out.reshape(b * t, h)))
        self._check_receipt(receipt, hop, meta, codec, call_index, first_position, b * t, claims)
        self.rtt[hop.owner] = 0.7 * self.rtt.get(hop.owner, elapsed) + 0.3 * elapsed
        self.reputation.ok(hop.owner)
        self.bans.success(hop.owner)
        self.tally.add(receipt)
        return out, receipt, claims

    def _check_receipt(
        self,
        r: Receipt,
        hop: Hop,
        meta: dict[str, Any],
        codec: ActCodec,
        call_index: int,
        first_position: int,
        n_rows: int,
        claims: list[RowClaim],
    ) -> None:
        rec = self.book.get(hop.owner)
        expected = {
            "server": hop.owner,
            "client": self.address,
            "session": str(meta.get("session")),
            "call": call_index,
            "model_root": self.root,
            "start": hop.start,
            "end": hop.end,
            "codec": int(codec),
            "first_position": first_position,
            "n_rows": n_rows,
            "rows_root": "0x" + rows_tree(claims).root.hex(),
            "ledger": to_checksum_address(self.config.ledger),
        }
        if rec is not None:
            expected["profile"] = rec.profile
        for k, v in expected.items():
            if getattr(r, k) != v:
                raise ServerFailed(hop.owner, "bad_receipt", f"{k}: {getattr(r, k)!r} != {v!r}")
        try:
            signer = r.signer()
        except InvalidMessage as e:
            raise ServerFailed(hop.owner, "bad_receipt", str(e)) from e
        if signer != hop.owner:
            raise ServerFailed(hop.owner, "bad_receipt", f"signed by {signer}")

    def settle(self) -> int:
        """Send every server it owes its latest voucher; returns how many were sent."""
        sent = 0
        for owner in sorted(self.tally.units):
            v = self.tally.voucher(owner)
            rec = self.book.get(owner)
            if v is None or rec is None:
                continue
            try:
                self.transport.call(
                    owner,
                    rec.url,
                    "voucher",
                    pack({"voucher": v.to_dict()}),
                    self.config.call_timeout_s,
                )
                sent += 1
            except ServerFailed:
                continue
        return sent

    # ------------------------------------------------------------ generation
    def session(self, max_length: int) -> Any:
        from deai.swarm.session import InferenceSession

        return InferenceSession(self, max_length)

    def generate(
        self,
        ids: Tensor,
        max_new_tokens: int,
        on_token: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Greedy decoding of ``ids [1, T]`` through the swarm; returns ``[1, T + N]``."""
        if ids.dim() != 2 or ids.shape[0] != 1:
            raise SwarmError("generate takes one sequence [1, T]")
        with torch.no_grad(), self.session(ids.shape[1] + max_new_tokens) as s:
            out = s.step(self.parts.embed_ids(ids))
            for i in range(max_new_tokens):
                nxt = self.parts.logits(out[:, -1:]).argmax(-1)  # [1, 1]
                ids = torch.cat([ids, nxt], dim=1)
                if on_token is not None:
                    on_token(i, int(nxt))
                if i + 1 < max_new_tokens:
                    out = s.step(self.parts.embed_ids(nxt))
        return ids

    # ------------------------------------------------------------ fine-tuning
    def _forward_hop(self, hop: Hop, x: Tensor, codec: ActCodec) -> Tensor:
        sent = roundtrip(x, codec)
        in_hashes = [h for row in sent for h in chain_hashes(ZERO_HASH, row)]
        meta = {"session": self.new_session_id()}
        out, receipt, claims = self.call(
            hop, "forward", meta, encode_act("hidden", x, codec), codec, in_hashes
        )
        self.checker.after_forward(CallLog(hop, "forward", receipt, claims, sent, out, codec))
        return out

    def forward_range(self, x: Tensor, start: int, end: int, trace: Trace | None = None) -> Tensor:
        """Stateless forward of ``x [B, T, H]`` through blocks ``[start, end)``."""
        codec = self.config.training_codec
        pending = self.route_training(start, end)
        recoveries = 0
        while pending:
            hop = pending.pop(0)
            try:
                out = self._forward_hop(hop, x, codec)
            except ServerFailed as e:
                self.failed(hop.owner, e)
                recoveries += 1
                self.recoveries += 1
                if recoveries > self.config.max_recoveries:
                    raise
                pending = self.route_training(hop.start, hop.end) + pending
                continue
            if trace is not None:
                trace.steps.append((hop, x))
            x = out
        return x

    def backward_range(self, trace: Trace, grad: Tensor) -> Tensor:
        """Gradient with respect to the traced forward's input."""
        codec = self.config.training_codec
        for hop, x in reversed(trace.steps):
            grad = self._backward_hop(hop, x, grad, codec, 0)
        return grad

    def _backward_hop(
        self, hop: Hop, x: Tensor, grad: Tensor, codec: ActCodec, depth: int
    ) -> Tensor:
        sent_x, sent_g = roundtrip(x, codec), roundtrip(grad, codec)
        whole = chain_hashes(
            ZERO_HASH, torch.cat([sent_x, sent_g], dim=1).reshape(-1, x.shape[-1])
        )[-1]
        tensors = {**encode_act("hidden", x, codec), **encode_act("grad", grad, codec)}
        try:
            out, _, _ = self.call(
                hop, "backward", {"session": self.new_session_id()}, tensors, codec,
                [whole] * (x.shape[0] * x.shape[1]),
            )  # fmt: skip
            return out
        except ServerFailed as e:
            self.failed(hop.owner, e)
            self.recoveries += 1
            if depth >= self.config.max_recoveries:
                raise
        sub = Trace()
        self.forward_range(x, hop.start, hop.end, sub)  # new hops' inputs, then back
        for h, xi in reversed(sub.steps):
            grad = self._backward_hop(h, xi, grad, codec, depth + 1)
        return grad

    def remote(self, hidden: Tensor) -> Tensor:
        """All blocks as one differentiable function of ``hidden [B, T, H]``."""
        return _Remote.apply(hidden, self)


class _Remote(torch.autograd.Function):
    """Petals' remote sequential: forward and backward are calls to the swarm."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, client: SwarmClient) -> Tensor:
        trace = Trace()
        out = client.forward_range(hidden.detach(), 0, client.manifest.n_blocks, trace)
        ctx.trace = trace
        ctx.client = client
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.client.backward_range(ctx.trace, grad.contiguous()), None


__all__ = ["CallLog", "ClientConfig", "MissingBlocks", "Reputation", "SwarmClient", "Trace"]
