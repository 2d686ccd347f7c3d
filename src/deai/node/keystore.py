"""A node's identity: an encrypted Ethereum keystore (Web3 Secret Storage v3).

``deai node init`` creates one with :func:`create_keystore`; the daemon opens it with
:func:`load_key`. The password comes from a file (mode 0600 recommended) or an
environment variable, never from the command line, where other users could read it in
the process list. The key file is written with mode 0600 and never overwritten.

The key derivation is scrypt with eth-account's default work factor (n = 2**18, about a
second and 256 MiB per unlock). ``kdf_work`` lowers it for throwaway local clusters and
tests, where many nodes unlock at once on one machine; never lower it for a key that
holds real value.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_utils import to_checksum_address

from deai.errors import ConfigError, DeaiError

DEFAULT_KDF_WORK = 2**18  # eth-account's scrypt default
FAST_KDF_WORK = 2**12  # local clusters and tests only


class KeystoreError(DeaiError, ValueError):
    """The keystore is missing, malformed, or the password is wrong."""


@dataclass(frozen=True)
class PasswordSource:
    """Where a keystore password comes from: exactly one of a file or an env variable."""

    file: Path | None = None
    env: str | None = None

    def read(self) -> str:
        if (self.file is None) == (self.env is None):
            raise ConfigError("password: give exactly one of password_file or password_env")
        if self.file is not None:
            try:
                return self.file.read_text().rstrip("\r\n")
            except OSError as e:
                raise ConfigError(f"password_file {self.file}: {e.strerror}") from None
        assert self.env is not None
        value = os.environ.get(self.env)
        if value is None:
            raise ConfigError(f"password_env: environment variable {self.env} is not set")
        return value


def create_keystore(
    path: Path,
    password: str,
    *,
    private_key: bytes | None = None,
    kdf_work: int = DEFAULT_KDF_WORK,
) -> str:
    """Write a new encrypted keystore to ``path`` (refusing to overwrite); return the address."""
    if path.exists():
        raise KeystoreError(f"{path} already exists; refusing to overwrite a key")
    if not password:
        raise KeystoreError("refusing an empty keystore password")
    key = private_key if private_key is not None else secrets.token_bytes(32)
    blob = Account.encrypt(key, password, kdf="scrypt", iterations=kdf_work)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(blob, f)
    return str(to_checksum_address(Account.from_key(key).address))


def keystore_address(path: Path) -> str:
    """The address a keystore holds, read without the password."""
    try:
        return str(to_checksum_address("0x" + json.loads(path.read_text())["address"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KeystoreError(f"{path}: not a keystore file ({e})") from None


def load_key(path: Path, password: str) -> bytes:
    """Decrypt the keystore at ``path``; a wrong password raises :class:`KeystoreError`."""
    try:
        blob = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(f"{path}: no keystore; create one with `deai node init`") from None
    except (OSError, ValueError) as e:
        raise KeystoreError(f"{path}: unreadable keystore ({e})") from None
    try:
        return bytes(Account.decrypt(blob, password))
    except ValueError as e:
        raise KeystoreError(f"{path}: cannot decrypt (wrong password?): {e}") from None
