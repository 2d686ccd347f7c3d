"""The man-in-the-middle server: an attack on secure aggregation, used as a measurement.

A server that relays every message can swap each client's encryption key ``c_pk`` in the
rosters it hands out for a key of its own, decrypt every Shamir share in transit and
re-encrypt it under the real recipient's key. Nobody notices (every ciphertext still
authenticates) and the server ends up holding every share of every client's self-mask seed
``b_u`` *and* mask key ``s_u``, so it strips all masks from each masked input and reads each
input alone. Unsigned rosters (the honest-but-curious protocol) fall to it completely; with
signed keys (``protocol.advert_bytes``) the clients refuse the tampered roster before
sharing anything, and the attack learns nothing.

The attacker sees only what a server sees: the messages of the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from torch import Tensor

from deai.errors import PrivacyError
from deai.privacy.secagg import shamir
from deai.privacy.secagg.crypto import RandBytes, agree, keypair, open_sealed, prg_words, seal
from deai.privacy.secagg.fixedpoint import unpack
from deai.privacy.secagg.messages import (
    AdvertiseKeys,
    KeyRoster,
    MaskedInput,
    PeerKeys,
    ShareBundle,
    ShareKeys,
)
from deai.privacy.secagg.protocol import ENC_LABEL, SecAggConfig, add_pairwise_mask, holder_x


@dataclass
class KeySwapMITM:
    """The attacker's state for one round; feed it every message it relays, in order."""

    config: SecAggConfig
    randbytes: RandBytes
    _real: dict[int, AdvertiseKeys] = field(default_factory=dict)
    _fake: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # u -> (sk, pk)
    _shares: dict[int, dict[int, tuple[bytes, bytes]]] = field(default_factory=dict)
    _masked_with: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _masked: dict[int, MaskedInput] = field(default_factory=dict)
    shares_read: int = 0  # shares decrypted in transit

    def on_advertise(self, msg: AdvertiseKeys) -> None:
        self._real[msg.sender] = msg
        self._fake[msg.sender] = keypair(self.randbytes)

    def on_roster(self, roster: KeyRoster) -> KeyRoster:
        """Every peer's encryption key but the recipient's own becomes the attacker's."""
        peers = tuple(
            p
            if p.client == roster.recipient or p.client not in self._fake
            else PeerKeys(p.client, self._fake[p.client][1], p.s_pk, p.signature)
            for p in roster.peers
        )
        return KeyRoster(roster.recipient, peers)

    def on_shares(self, msg: ShareKeys) -> ShareKeys:
        """Decrypt each share (sent to the fake key), keep it, re-encrypt it for the real
        recipient as if from the sender's fake key, which is what the recipient expects."""
        u, session = msg.sender, self.config.session
        out: list[tuple[int, bytes]] = []
        for v, ct in msg.ciphertexts:
            plain = open_sealed(
                agree(self._fake[v][0], self._real[u].c_pk, ENC_LABEL, session), u, v, session, ct
            )
            s_share = plain[8 : 8 + shamir.SHARE_BYTES]
            b_share = plain[8 + shamir.SHARE_BYTES :]
            self._shares.setdefault(u, {})[holder_x(v)] = (s_share, b_share)
            self.shares_read += 1
            key = agree(self._fake[u][0], self._real[v].c_pk, ENC_LABEL, session)
            out.append((v, seal(key, u, v, session, plain)))
        return ShareKeys(u, tuple(out))

    def on_bundle(self, bundle: ShareBundle) -> None:
        self._masked_with[bundle.recipient] = tuple(v for v, _ in bundle.ciphertexts)

    def on_masked(self, msg: MaskedInput) -> None:
        self._masked[msg.sender] = msg

    def recover(self) -> dict[int, Tensor]:
        """Each client's input, for every client whose secrets the attacker could rebuild."""
        cfg, t = self.config, self.config.threshold
        out: dict[int, Tensor] = {}
        for u, msg in sorted(self._masked.items()):
            held = self._shares.get(u, {})
            if len(held) < t:
                continue
            try:
                s_sk = shamir.combine({x: s for x, (s, _) in held.items()}, t)
                b = shamir.combine({x: b for x, (_, b) in held.items()}, t)
            except PrivacyError:
                continue
            pk = X25519PrivateKey.from_private_bytes(s_sk).public_key().public_bytes_raw()
            if pk != self._real[u].s_pk:
                continue
            y = unpack(msg.payload, msg.bits, msg.dim)
            np.subtract(y, prg_words(b, cfg.dim), out=y)
            for v in self._masked_with.get(u, ()):
                add_pairwise_mask(y, u, v, s_sk, self._real[v].s_pk, cfg.session, remove=True)
            y &= cfg.fixed_point.mask
            out[u] = cfg.fixed_point.decode_sum(y, 1)
        return out
