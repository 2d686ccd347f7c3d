"""Artifact store, keystore and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from deai.errors import ConfigError
from deai.node.config import NodeRole, load_job, load_node_config
from deai.node.keystore import (
    FAST_KDF_WORK,
    KeystoreError,
    PasswordSource,
    create_keystore,
    keystore_address,
    load_key,
)
from deai.node.signing import Signer
from deai.node.store import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    BadDigest,
    HashMismatch,
    check_fetched,
    sha256_hex,
)


def test_store_roundtrip_and_checks(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a", max_bytes=100)
    digest = store.put(b"model bytes")
    assert digest == sha256_hex(b"model bytes") and store.get(digest) == b"model bytes"
    assert store.digests() == [digest] and store.put(b"model bytes") == digest
    with pytest.raises(HashMismatch):
        store.put(b"x", expected=digest)
    with pytest.raises(ArtifactTooLarge):
        store.put(b"x" * 101)
    with pytest.raises(ArtifactNotFound):
        store.get("0" * 64)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(BadDigest):
            store.get(bad)
    (tmp_path / "a" / digest[:2] / digest).write_bytes(b"tampered")
    with pytest.raises(HashMismatch):  # a corrupted file is never served
        store.get(digest)
    with pytest.raises(HashMismatch):
        check_fetched(digest, b"other")


def test_keystore_create_load_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "key.json"
    address = create_keystore(path, "pw", private_key=b"\x01" * 32, kdf_work=FAST_KDF_WORK)
    assert keystore_address(path) == address == Signer(b"\x01" * 32).address
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(path, "pw") == b"\x01" * 32
    with pytest.raises(KeystoreError, match="wrong password"):
        load_key(path, "nope")
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        create_keystore(path, "pw", kdf_work=FAST_KDF_WORK)
    (tmp_path / "pw.txt").write_text("secret\n")
    assert PasswordSource(file=tmp_path / "pw.txt").read() == "secret"
    monkeypatch.setenv("DEAI_PW", "s2")
    assert PasswordSource(env="DEAI_PW").read() == "s2"
    with pytest.raises(ConfigError, match="not set"):
        PasswordSource(env="DEAI_NOT_SET_ANYWHERE").read()


def test_node_config_paths_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text('[node]\nroles = ["provider", "validator"]\npassword_file = "pw"\n')
    cfg = load_node_config(f)
    assert cfg.has(NodeRole.VALIDATOR) and cfg.path(cfg.node.keystore) == tmp_path / "key.json"
    assert cfg.password().file == tmp_path / "pw"
    f.write_text('[node]\nroles = ["miner"]\npassword_env = "X"\nprot = 1\n')
    with pytest.raises(ConfigError) as e:
        load_node_config(f)
    assert "node.roles.0" in str(e.value) and "node.prot: unknown field" in str(e.value)
    f.write_text('[node]\npassword_env = "X"\npassword_file = "y"\n')
    with pytest.raises(ConfigError, match="exactly one of password_file or password_env"):
        load_node_config(f)
    f.write_text('[node]\npassword_env = "X"\n[data]\nshards = 2\nindex = 2\n')
    with pytest.raises(ConfigError, match=r"must be < data\.shards"):
        load_node_config(f)


def test_job_config(tmp_path: Path) -> None:
    f = tmp_path / "job.toml"
    f.write_text('rounds = 2\n[algorithm]\nname = "fedavg"\n')
    assert load_job(f).rounds == 2
    f.write_text("rounds = 0\n")
    with pytest.raises(ConfigError, match="rounds"):
        load_job(f)
    with pytest.raises(ConfigError, match="no such job file"):
        load_job(tmp_path / "missing.toml")
