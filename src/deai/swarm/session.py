"""An inference session across a chain of servers, with failure recovery by replay.

The session routes blocks ``0..n`` once (latency-optimal, :func:`~deai.swarm.routing.
latency_route`) and opens, lazily, one server-side session per hop with the declared
``max_length`` and the client's idle timeout. For every hop it keeps the rows it sent
(the inputs of the hop's first block) and what came back, with the receipts.

Recovery (after Petals' ``_update_sequence``): when a hop fails (timeout, refusal, bad
receipt, wrong position, expired session), the client bans the server, routes the same
blocks ``[start, end)`` again without it (maybe over several servers) and *replays*: the
first replacement gets the hop's whole input history at position 0, its output rows are
the history of the next replacement, and so on; then the step that failed is sent at its
true position. Every replacement therefore holds exactly the keys and values the failed
server held, at the same positions, and the step's output is what it would have been
(Petals #587: the replayed session started at position 0 again and failed an assertion).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch import Tensor

from deai.swarm.client import CallLog, SwarmClient
from deai.swarm.errors import ServerFailed, SwarmError
from deai.swarm.routing import Hop
from deai.swarm.wire import ZERO_HASH, chain_hashes, encode_act, pack, roundtrip


@dataclass
class HopState:
    hop: Hop
    sid: str  # the server-side session id
    length: int = 0  # positions the server holds
    in_hash: bytes = ZERO_HASH  # input hash at position length - 1
    calls: list[CallLog] = field(default_factory=list)

    def history(self) -> Tensor | None:
        """Every row sent to this hop, ``[1, length, H]``."""
        if not self.calls:
            return None
        return torch.cat([c.inputs for c in self.calls], dim=1)

    def outputs(self) -> Tensor | None:
        if not self.calls:
            return None
        return torch.cat([c.outputs for c in self.calls], dim=1)


class InferenceSession:
    def __init__(self, client: SwarmClient, max_length: int) -> None:
        self.client = client
        self.max_length = max_length
        self.position = 0
        self.hops = [
            self._new(h) for h in client.route_generation(0, client.manifest.n_blocks, max_length)
        ]
        self.retired: list[HopState] = []  # hops that failed or were closed
        self.recoveries = 0
        self.closed = False

    def __enter__(self) -> InferenceSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _new(self, hop: Hop) -> HopState:
        return HopState(hop, self.client.new_session_id())

    @property
    def route(self) -> list[Hop]:
        return [h.hop for h in self.hops]

    def _send(self, hs: HopState, x: Tensor) -> Tensor:
        c = self.client
        codec = c.config.inference_codec
        sent = roundtrip(x, codec)
        in_hashes = chain_hashes(hs.in_hash, sent[0])
        meta = {
            "session": hs.sid,
            "position": hs.length,
            "max_length": self.max_length,
            "timeout_s": c.config.session_timeout_s,
        }
        out, receipt, claims = c.call(
            hs.hop, "step", meta, encode_act("hidden", x, codec), codec, in_hashes,
            call_index=len(hs.calls), first_position=hs.length,
        )  # fmt: skip
        hs.calls.append(CallLog(hs.hop, "step", receipt, claims, sent, out, codec))
        hs.length += x.shape[1]
        hs.in_hash = in_hashes[-1]
        return out

    def step(self, hidden: Tensor) -> Tensor:
        """Run ``hidden [1, T, H]`` (the next T positions) through every block."""
        if self.closed:
            raise SwarmError("session is closed")
        if self.position + hidden.shape[1] > self.max_length:
            raise SwarmError(
                f"session: {self.position + hidden.shape[1]} > max_length {self.max_length}"
            )
        x = hidden
        k = 0
        while k < len(self.hops):
            try:
                x_next = self._send(self.hops[k], x)
            except ServerFailed as e:
                self.client.failed(e.server, e)
                self._recover(k)
                continue  # retry the step on the replacement hops (index k on)
            x = x_next
            k += 1
        self.position += hidden.shape[1]
        return x

    def _recover(self, k: int) -> None:
        """Replace hop ``k`` by a fresh route over its blocks, replaying its history."""
        old = self.hops[k]
        history = old.history()
        while True:
            self.recoveries += 1
            self.client.recoveries += 1
            if self.recoveries > self.client.config.max_recoveries:
                raise SwarmError(f"session: gave up after {self.recoveries - 1} recoveries")
            fresh = [
                self._new(h)
                for h in self.client.route_generation(old.hop.start, old.hop.end, self.max_length)
            ]
            try:
                x = history
                if x is not None:
                    for hs in fresh:
                        x = self._send(hs, x)
            except ServerFailed as e:
                self.client.failed(e.server, e)
                self.retired.extend(h for h in fresh if h.calls)
                continue
            break
        self.retired.append(old)
        self.hops[k : k + 1] = fresh

    def all_hops(self) -> list[HopState]:
        return self.retired + self.hops

    def close(self) -> None:
        """Close the server-side sessions (best effort), then run the session's checks."""
        if self.closed:
            return
        self.closed = True
        c = self.client
        for hs in self.hops:
            if hs.calls:
                with contextlib.suppress(ServerFailed):
                    c.transport.call(
                        hs.hop.owner,
                        hs.hop.url,
                        "close",
                        pack({"session": hs.sid}),
                        c.config.call_timeout_s,
                    )
        c.checker.after_session(self)
