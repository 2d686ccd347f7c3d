"""The client side of secure aggregation as an explicit state machine.

One method per stage, each taking the server's message of the previous stage and
returning this client's message; calling a method out of order raises ``InvalidMessage``.
The client's input is masked as

    y_u = x_u + PRG(b_u) + sum_{v in U2, v ~ u} sign(u, v) PRG(KA(s_u, s_v))   (mod 2^k)

with ``x_u`` the fixed-point encoding of its vector, ``b_u`` a fresh self-mask seed and
``s_u`` a fresh mask key (Bonawitz et al. 2017, Sec. 4). Both secrets are Shamir-shared
among the client and its neighbours before any masked input is sent.

Against a malicious server (Bonawitz et al. 2017, Fig. 5): the client signs its public
keys, checks every peer's signature in the roster, signs the survivor set in the
consistency round and checks ``t`` signatures on it before revealing a share. Any failed
check raises ``PrivacyError``: the client aborts and reveals nothing more. All randomness
(keys, seeds, Shamir coefficients) comes from the ``randbytes`` the caller passes: a
per-node secret, never anything derived from public data.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from deai.errors import InvalidMessage, PrivacyError
from deai.privacy.secagg import shamir
from deai.privacy.secagg.crypto import RandBytes, agree, keypair, open_sealed, prg_words, seal
from deai.privacy.secagg.fixedpoint import pack
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
    ENC_LABEL,
    SecAggConfig,
    Signer,
    Stage,
    Verifier,
    add_pairwise_mask,
    advert_bytes,
    consistency_bytes,
    holder_x,
)

_PLAIN_BYTES = 8 + 2 * shamir.SHARE_BYTES  # sender, recipient, s_sk share, b share


class SecAggClient:
    """Client ``client_id``'s view of one secure-aggregation round."""

    def __init__(
        self,
        client_id: int,
        config: SecAggConfig,
        vector: Tensor,
        randbytes: RandBytes,
        sign: Signer,
        verify: Verifier,
    ) -> None:
        if not 0 <= client_id < config.n_clients:
            raise PrivacyError(f"secagg: client id {client_id} out of range")
        if tuple(vector.shape) != (config.dim,):
            raise PrivacyError(
                f"secagg: input has shape {tuple(vector.shape)}, need ({config.dim},)"
            )
        self.id = client_id
        self.config = config
        self._rand = randbytes
        self._sign = sign
        self._verify = verify
        self._x = config.fixed_point.encode(vector)
        self._c_sk, self._c_pk = keypair(randbytes)
        self._s_sk, self._s_pk = keypair(randbytes)
        self._b = randbytes(shamir.SECRET_BYTES)
        self._peers: dict[int, PeerKeys] = {}
        self._held: dict[int, tuple[bytes, bytes]] = {}  # owner -> (s_sk share, b share)
        self._survivors: tuple[int, ...] = ()  # U3 as signed in the consistency round
        self.stage = Stage.ADVERTISE_KEYS

    def _expect(self, stage: Stage) -> None:
        if self.stage is not stage:
            raise InvalidMessage(f"secagg client {self.id}: at {self.stage.name}, not {stage.name}")

    # stage 0 -----------------------------------------------------------------------------
    def advertise_keys(self) -> AdvertiseKeys:
        self._expect(Stage.ADVERTISE_KEYS)
        self.stage = Stage.SHARE_KEYS
        sig = self._sign(advert_bytes(self.config.session, self.id, self._c_pk, self._s_pk))
        return AdvertiseKeys(self.id, self._c_pk, self._s_pk, sig)

    # stage 1 -----------------------------------------------------------------------------
    def share_keys(self, roster: KeyRoster) -> ShareKeys:
        self._expect(Stage.SHARE_KEYS)
        allowed = self.config.neighbours(self.id) | {self.id}
        peers = {p.client: p for p in roster.peers}
        if roster.recipient != self.id or len(peers) != len(roster.peers):
            raise PrivacyError(f"secagg client {self.id}: malformed key roster")
        if not set(peers) <= allowed:
            raise PrivacyError(f"secagg client {self.id}: roster lists non-neighbours")
        mine = peers.get(self.id)
        if mine is None or (mine.c_pk, mine.s_pk) != (self._c_pk, self._s_pk):
            raise PrivacyError(f"secagg client {self.id}: roster does not carry my own keys")
        keys = [k for p in peers.values() for k in (p.c_pk, p.s_pk)]
        if len(set(keys)) != len(keys):
            raise PrivacyError(f"secagg client {self.id}: roster repeats a public key")
        if len(peers) < self.config.threshold:
            raise PrivacyError(
                f"secagg client {self.id}: only {len(peers)} key holders, threshold is "
                f"{self.config.threshold}"
            )
        for v, p in peers.items():  # the server may not substitute anyone's keys
            signed = advert_bytes(self.config.session, v, p.c_pk, p.s_pk)
            if v != self.id and not self._verify(v, signed, p.signature):
                raise PrivacyError(
                    f"secagg client {self.id}: the keys of client {v} in the roster are not "
                    f"signed by client {v}; the server is tampering, aborting"
                )
        self._peers = peers
        xs = [holder_x(v) for v in sorted(peers)]
        s_shares = shamir.split(self._s_sk, xs, self.config.threshold, self._rand)
        b_shares = shamir.split(self._b, xs, self.config.threshold, self._rand)
        out: list[tuple[int, bytes]] = []
        for v in sorted(peers):
            x = holder_x(v)
            if v == self.id:
                self._held[v] = (s_shares[x], b_shares[x])
                continue
            plain = (
                self.id.to_bytes(4, "little") + v.to_bytes(4, "little") + s_shares[x] + b_shares[x]
            )
            key = agree(self._c_sk, peers[v].c_pk, ENC_LABEL, self.config.session)
            out.append((v, seal(key, self.id, v, self.config.session, plain)))
        self.stage = Stage.MASKED_INPUT
        return ShareKeys(self.id, tuple(out))

    # stage 2 -----------------------------------------------------------------------------
    def masked_input(self, bundle: ShareBundle) -> MaskedInput:
        self._expect(Stage.MASKED_INPUT)
        if bundle.recipient != self.id:
            raise PrivacyError(f"secagg client {self.id}: bundle addressed to {bundle.recipient}")
        for v, ct in bundle.ciphertexts:
            peer = self._peers.get(v)
            if peer is None or v == self.id or v in self._held:
                raise PrivacyError(f"secagg client {self.id}: unexpected shares from {v}")
            key = agree(self._c_sk, peer.c_pk, ENC_LABEL, self.config.session)
            plain = open_sealed(key, v, self.id, self.config.session, ct)
            if len(plain) != _PLAIN_BYTES or plain[:8] != v.to_bytes(
                4, "little"
            ) + self.id.to_bytes(4, "little"):
                raise PrivacyError(f"secagg client {self.id}: shares from {v} are mislabelled")
            s_share = plain[8 : 8 + shamir.SHARE_BYTES]
            self._held[v] = (s_share, plain[8 + shamir.SHARE_BYTES :])
        if len(self._held) < self.config.threshold:
            raise PrivacyError(
                f"secagg client {self.id}: shares from only {len(self._held)} clients, "
                f"threshold is {self.config.threshold}"
            )
        y = self._x.copy()
        np.add(y, prg_words(self._b, self.config.dim), out=y)
        for v in sorted(self._held):
            if v != self.id:
                add_pairwise_mask(
                    y, self.id, v, self._s_sk, self._peers[v].s_pk, self.config.session
                )
        y &= self.config.fixed_point.mask
        self.stage = Stage.CONSISTENCY
        bits = self.config.bits
        return MaskedInput(self.id, bits, self.config.dim, pack(y, bits))

    # stage 3 -----------------------------------------------------------------------------
    def consistency(self, check: ConsistencyCheck) -> ConsistencySignature:
        """Sign the survivor set U3 the server announced (Bonawitz et al., round 3)."""
        self._expect(Stage.CONSISTENCY)
        survivors = set(check.survivors)
        if check.recipient != self.id or len(survivors) != len(check.survivors):
            raise PrivacyError(f"secagg client {self.id}: malformed consistency check")
        if not all(0 <= v < self.config.n_clients for v in survivors):
            raise PrivacyError(f"secagg client {self.id}: survivor set lists unknown clients")
        self._check_survivors(survivors)
        self._survivors = tuple(sorted(survivors))
        self.stage = Stage.UNMASKING
        sig = self._sign(consistency_bytes(self.config.session, self._survivors))
        return ConsistencySignature(self.id, sig)

    def _check_survivors(self, survivors: set[int]) -> None:
        if self.id not in survivors:
            raise PrivacyError(
                f"secagg client {self.id}: declared dropped after sending its input; refusing "
                "to reveal its mask key"
            )
        if len(survivors) < self.config.threshold:
            raise PrivacyError(
                f"secagg client {self.id}: only {len(survivors)} survivors declared, threshold "
                f"is {self.config.threshold}"
            )

    # stage 4 -----------------------------------------------------------------------------
    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Reveal one share per held secret, once ``t`` holders have signed the same U3."""
        self._expect(Stage.UNMASKING)
        if request.recipient != self.id:
            raise PrivacyError(f"secagg client {self.id}: malformed unmask request")
        if tuple(sorted(request.survivors)) != self._survivors or len(request.survivors) != len(
            self._survivors
        ):
            raise PrivacyError(
                f"secagg client {self.id}: the survivor set changed after I signed it; the "
                "server is showing clients different views, aborting"
            )
        signed = consistency_bytes(self.config.session, self._survivors)
        signers = dict(request.signatures)
        if len(signers) != len(request.signatures) or not signers.keys() <= set(self._survivors):
            raise PrivacyError(f"secagg client {self.id}: consistency signers are not survivors")
        holders = self.config.neighbours(self.id) | {self.id}
        valid = 0
        for v, sig in signers.items():
            if not self._verify(v, signed, sig):
                raise PrivacyError(
                    f"secagg client {self.id}: client {v}'s consistency signature is invalid; "
                    "the server is tampering, aborting"
                )
            valid += v in holders
        if valid < self.config.threshold:
            raise PrivacyError(
                f"secagg client {self.id}: only {valid} of my share holders signed the survivor "
                f"set, threshold is {self.config.threshold}; refusing to reveal shares"
            )
        survivors = set(self._survivors)
        self_mask: list[tuple[int, bytes]] = []
        key: list[tuple[int, bytes]] = []
        for v in sorted(self._held):  # each owner gets exactly one of its two shares
            s_share, b_share = self._held[v]
            if v in survivors:
                self_mask.append((v, b_share))
            else:
                key.append((v, s_share))
        self.stage = Stage.DONE
        return UnmaskResponse(self.id, tuple(self_mask), tuple(key))
