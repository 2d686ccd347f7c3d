"""The server (validator) side of secure aggregation as an explicit state machine.

Per stage the server ``receive_*``s client messages (a malformed or out-of-place message,
or one whose signature does not verify, raises ``InvalidMessage`` and is ignored: that
client is simply treated as dropped) and then ``close_*``s the stage, which returns the
messages to send next. A stage closes with fewer than ``t`` live clients only by raising
:class:`SecAggAborted`. ``finish`` removes the self masks of the survivors and the pairwise
masks of clients that dropped after sharing their keys, and returns the exact sum of the
survivors' encoded inputs.

The honest server checks the clients' signatures itself so that one client with a bad
signature is dropped instead of making every other client abort (clients abort on any bad
signature in what the server relays, because only a lying server would relay one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from torch import Tensor

from deai.errors import CodecError, InvalidMessage, PrivacyError
from deai.privacy.secagg import shamir
from deai.privacy.secagg.crypto import prg_words
from deai.privacy.secagg.fixedpoint import U32, unpack
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    PeerKeys,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from deai.privacy.secagg.protocol import (
    SecAggAborted,
    SecAggConfig,
    Stage,
    Verifier,
    add_pairwise_mask,
    advert_bytes,
    consistency_bytes,
    holder_x,
)


@dataclass(frozen=True)
class SecAggOutput:
    words: U32  # [d] sum of the survivors' encoded inputs modulo 2^k (never wrapped)
    vector: Tensor  # [d] float32 decoding of that sum
    survivors: tuple[int, ...]  # U3: whose inputs are in the sum
    dropped_after_sharing: tuple[int, ...]  # U2 \ U3: whose pairwise masks were removed


class SecAggServer:
    def __init__(self, config: SecAggConfig, verify: Verifier) -> None:
        self.config = config
        self._verify = verify
        self.stage = Stage.ADVERTISE_KEYS
        self._keys: dict[int, AdvertiseKeys] = {}  # U1
        self._rosters: dict[int, KeyRoster] = {}
        self._cts: dict[int, dict[int, bytes]] = {}  # U2: sender -> recipient -> ciphertext
        self._masked_with: dict[int, frozenset[int]] = {}  # recipient -> senders forwarded
        self._sum = np.zeros(config.dim, dtype=np.uint32)
        self._u3: list[int] = []
        self._signatures: dict[int, bytes] = {}  # U4: client -> its signature on U3
        self._responses: dict[int, UnmaskResponse] = {}

    def _expect(self, stage: Stage, sender: int) -> None:
        if self.stage is not stage:
            raise InvalidMessage(f"secagg server: at {self.stage.name}, got a {stage.name} message")
        if not 0 <= sender < self.config.n_clients:
            raise InvalidMessage(f"secagg server: unknown client {sender}")

    def _need(self, live: int, what: str) -> None:
        if live < self.config.threshold:
            raise SecAggAborted(
                self.stage,
                f"only {live} clients {what}, fewer than the threshold t={self.config.threshold} "
                f"(n={self.config.n_clients}; at most n - t = "
                f"{self.config.n_clients - self.config.threshold} drop-outs are tolerated)",
            )

    # stage 0 -----------------------------------------------------------------------------
    def receive_advertise(self, msg: AdvertiseKeys) -> None:
        self._expect(Stage.ADVERTISE_KEYS, msg.sender)
        if msg.sender in self._keys or len(msg.c_pk) != 32 or len(msg.s_pk) != 32:
            raise InvalidMessage(f"secagg server: bad or repeated keys from {msg.sender}")
        signed = advert_bytes(self.config.session, msg.sender, msg.c_pk, msg.s_pk)
        if not self._verify(msg.sender, signed, msg.signature):
            raise InvalidMessage(f"secagg server: keys of client {msg.sender} are not signed by it")
        self._keys[msg.sender] = msg

    def close_advertise(self) -> dict[int, KeyRoster]:
        self._need(len(self._keys), "advertised keys")
        out: dict[int, KeyRoster] = {}
        for u in sorted(self._keys):
            peers = sorted((self.config.neighbours(u) | {u}) & self._keys.keys())
            k = self._keys
            out[u] = KeyRoster(
                u, tuple(PeerKeys(v, k[v].c_pk, k[v].s_pk, k[v].signature) for v in peers)
            )
        self._rosters = out
        self.stage = Stage.SHARE_KEYS
        return out

    # stage 1 -----------------------------------------------------------------------------
    def receive_shares(self, msg: ShareKeys) -> None:
        self._expect(Stage.SHARE_KEYS, msg.sender)
        roster = self._rosters.get(msg.sender)
        if roster is None or msg.sender in self._cts:
            raise InvalidMessage(f"secagg server: unexpected shares from {msg.sender}")
        expected = {p.client for p in roster.peers} - {msg.sender}
        cts = dict(msg.ciphertexts)
        if set(cts) != expected or len(cts) != len(msg.ciphertexts):
            raise InvalidMessage(f"secagg server: client {msg.sender} shared with the wrong set")
        self._cts[msg.sender] = cts

    def close_shares(self) -> dict[int, ShareBundle]:
        self._need(len(self._cts), "shared their keys")
        out: dict[int, ShareBundle] = {}
        for w in sorted(self._cts):
            items = tuple((v, self._cts[v][w]) for v in sorted(self._cts) if w in self._cts[v])
            out[w] = ShareBundle(w, items)
            self._masked_with[w] = frozenset(v for v, _ in items)
        self.stage = Stage.MASKED_INPUT
        return out

    # stage 2 -----------------------------------------------------------------------------
    def receive_masked(self, msg: MaskedInput) -> None:
        self._expect(Stage.MASKED_INPUT, msg.sender)
        if msg.sender not in self._cts or msg.sender in self._u3:
            raise InvalidMessage(f"secagg server: unexpected masked input from {msg.sender}")
        if msg.bits != self.config.bits or msg.dim != self.config.dim:
            raise InvalidMessage(f"secagg server: client {msg.sender} sent the wrong shape")
        try:
            y = unpack(msg.payload, msg.bits, msg.dim)
        except CodecError as e:
            raise InvalidMessage(f"secagg server: client {msg.sender}: {e}") from e
        np.add(self._sum, y, out=self._sum)
        self._u3.append(msg.sender)

    def close_masked(self) -> dict[int, ConsistencyCheck]:
        self._need(len(self._u3), "sent masked inputs")
        survivors = tuple(sorted(self._u3))
        self.stage = Stage.CONSISTENCY
        return {u: ConsistencyCheck(u, survivors) for u in survivors}

    # stage 3 -----------------------------------------------------------------------------
    def receive_consistency(self, msg: ConsistencySignature) -> None:
        self._expect(Stage.CONSISTENCY, msg.sender)
        if msg.sender not in self._u3 or msg.sender in self._signatures:
            raise InvalidMessage(f"secagg server: unexpected consistency signature {msg.sender}")
        signed = consistency_bytes(self.config.session, self._u3)
        if not self._verify(msg.sender, signed, msg.signature):
            raise InvalidMessage(f"secagg server: client {msg.sender} signed another survivor set")
        self._signatures[msg.sender] = msg.signature

    def close_consistency(self) -> dict[int, UnmaskRequest]:
        self._need(len(self._signatures), "signed the survivor set")
        survivors = tuple(sorted(self._u3))
        sigs = tuple(sorted(self._signatures.items()))
        self.stage = Stage.UNMASKING
        return {u: UnmaskRequest(u, survivors, sigs) for u in sorted(self._signatures)}

    # stage 4 -----------------------------------------------------------------------------
    def receive_unmask(self, msg: UnmaskResponse) -> None:
        self._expect(Stage.UNMASKING, msg.sender)
        if msg.sender not in self._signatures or msg.sender in self._responses:
            raise InvalidMessage(f"secagg server: unexpected unmask response from {msg.sender}")
        held = self._masked_with[msg.sender] | {msg.sender}
        u3 = set(self._u3)
        b_owners = [v for v, _ in msg.self_mask_shares]
        s_owners = [v for v, _ in msg.key_shares]
        if set(b_owners) != held & u3 or set(s_owners) != held - u3:
            raise InvalidMessage(f"secagg server: client {msg.sender} answered for the wrong set")
        if len(b_owners) + len(s_owners) != len(held):
            raise InvalidMessage(f"secagg server: client {msg.sender} repeated a share")
        self._responses[msg.sender] = msg

    def finish(self) -> SecAggOutput:
        self._need(len(self._responses), "answered the unmasking stage")
        b_shares: dict[int, dict[int, bytes]] = {}
        s_shares: dict[int, dict[int, bytes]] = {}
        for w, r in self._responses.items():
            for v, sh in r.self_mask_shares:
                b_shares.setdefault(v, {})[holder_x(w)] = sh
            for v, sh in r.key_shares:
                s_shares.setdefault(v, {})[holder_x(w)] = sh
        total = self._sum.copy()
        dim = self.config.dim
        for u in sorted(self._u3):
            b = self._combine(b_shares.get(u, {}), f"client {u}'s self-mask seed")
            np.subtract(total, prg_words(b, dim), out=total)
        dropped = sorted(set(self._cts) - set(self._u3))
        for v in dropped:
            partners = [u for u in sorted(self._u3) if v in self._masked_with[u]]
            if not partners:
                continue
            s_sk = self._combine(s_shares.get(v, {}), f"client {v}'s mask key")
            pk = X25519PrivateKey.from_private_bytes(s_sk).public_key().public_bytes_raw()
            if pk != self._keys[v].s_pk:
                raise SecAggAborted(self.stage, f"shares of client {v}'s mask key are inconsistent")
            for u in partners:  # u added sign(u, v) PRG(KA(s_u, s_v)); remove it
                add_pairwise_mask(
                    total, u, v, s_sk, self._keys[u].s_pk, self.config.session, remove=True
                )
        total &= self.config.fixed_point.mask
        survivors = tuple(sorted(self._u3))
        self.stage = Stage.DONE
        return SecAggOutput(
            words=total,
            vector=self.config.fixed_point.decode_sum(total, len(survivors)),
            survivors=survivors,
            dropped_after_sharing=tuple(dropped),
        )

    def _combine(self, shares: dict[int, bytes], what: str) -> bytes:
        t = self.config.threshold
        if len(shares) < t:
            raise SecAggAborted(
                self.stage,
                f"too many drop-outs: {what} has {len(shares)} shares among the "
                f"{len(self._responses)} clients that answered, {t} needed",
            )
        try:
            return shamir.combine(shares, t)
        except PrivacyError as e:
            raise SecAggAborted(self.stage, f"{what}: {e}") from e
