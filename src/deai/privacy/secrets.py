"""Per-node secrets for a simulation: secret randomness and identity keys.

Every secret a node uses (DP noise, SecAgg keys and masks, private coins) must be
unpredictable to everyone else. Deployed, a node draws them from the operating system's
CSPRNG and holds its own identity key. A simulation runs many nodes in one process and must
be reproducible, so it derives each node's secrets from one *master seed* held by the
runtime alone (never by a role object, never written into a spec): HKDF-SHA256 of the
master seed with the node id and a label as context, so each (node, label) stream is
independent and no public value (spec seed, job id, node id) determines any of them.

Identity keys are secp256k1 (eth-account), as a deployed node's; signatures are EIP-191
``personal_sign`` over the given bytes.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from deai.errors import ConfigError

_MAX_SECRET_BYTES = 255 * 32  # HKDF-SHA256 output limit


class SimulatedSecrets:
    """The simulation runtime's secret store: give it the master seed, keep it away from
    the roles, and hand each node only its own ``secret_bytes`` / ``sign``."""

    def __init__(self, master_seed: bytes) -> None:
        if len(master_seed) < 16:
            raise ConfigError("the simulation master seed needs at least 16 bytes")
        self._master = master_seed
        self._account = lru_cache(maxsize=None)(self._derive_account)

    def _derive(self, info: str, n: int) -> bytes:
        if not 1 <= n <= _MAX_SECRET_BYTES:
            raise ConfigError(f"secret_bytes: n must be in [1, {_MAX_SECRET_BYTES}], got {n}")
        return HKDF(hashes.SHA256(), n, salt=None, info=info.encode()).derive(self._master)

    def secret_bytes(self, node_id: str, label: str, n: int = 32) -> bytes:
        """``n`` bytes of ``node_id``'s secret randomness for ``label``."""
        return self._derive(f"deai/secret/{len(node_id)}:{node_id}/{label}", n)

    def _derive_account(self, node_id: str) -> LocalAccount:
        return Account.from_key(self._derive(f"deai/identity/{len(node_id)}:{node_id}", 32))

    def address(self, node_id: str) -> str:
        return str(self._account(node_id).address)

    def sign(self, node_id: str, data: bytes) -> bytes:
        """``node_id``'s EIP-191 signature on ``data``."""
        signed = Account.sign_message(encode_defunct(data), self._account(node_id).key)
        return bytes(signed.signature)

    def verify(self, node_id: str, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` on ``data`` recovers to ``node_id``'s address."""
        try:
            signer = Account.recover_message(encode_defunct(data), signature=signature)
        except Exception:  # malformed signature bytes of any kind: not a valid signature
            return False
        return bool(signer == self.address(node_id))
