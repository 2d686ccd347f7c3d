"""``node.toml`` and job files: TOML validated by pydantic, with one clear error.

A node file says who the node is (keystore), where it listens, which roles it holds,
where its private data shard comes from, and which chain it registers on. Nothing in it
changes a job's result: a job file is a :class:`~deai.job.spec.JobSpec` (the same TOML a
scenario uses, whose ``[simulation]`` table, if present, is ignored), and every validator
derives its behaviour from the spec alone. Mistakes become one
:class:`~deai.errors.ConfigError` naming the field, the bad value and what is allowed.
Relative paths in a node file are relative to the file's directory.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deai.errors import ConfigError
from deai.job.data import DataSource
from deai.job.errors import read_toml, validate
from deai.job.spec import JobSpec
from deai.ledger.types import Role as ChainRole
from deai.node.admission import AdmissionConfig
from deai.node.keystore import PasswordSource

PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Wei = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class NodeRole(StrEnum):
    REQUESTER = "requester"
    PROVIDER = "provider"
    VALIDATOR = "validator"

    @property
    def chain_bit(self) -> ChainRole:
        return ChainRole[self.name]


class NodeSection(_Strict):
    name: str = "node"  # a label for logs; the identity is the keystore's address
    host: str = "127.0.0.1"  # interface to listen on
    port: Port = 8700  # 0 = any free port (only useful without a chain registration)
    public_url: str | None = None  # what peers dial; default http://host:port
    data_dir: Path = Path("data")  # artifacts, journal, logs
    keystore: Path = Path("key.json")
    password_file: Path | None = None
    password_env: str | None = None
    roles: list[NodeRole] = [NodeRole.PROVIDER]
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024  # per request
    replay_window_s: PositiveFloat = 120.0  # envelope timestamps older than this are stale
    strike_limit: Annotated[int, Field(ge=1)] = 50  # refused messages before a peer is banned
    send_timeout_s: PositiveFloat = 10.0  # per HTTP attempt
    send_retry_s: PositiveFloat = 30.0  # keep retrying a failed send this long
    torch_threads: Annotated[int, Field(ge=1)] = 1  # intra-op threads for local training

    @model_validator(mode="after")
    def _password(self) -> NodeSection:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("node: give exactly one of password_file or password_env")
        if not self.roles:
            raise ValueError("node.roles: at least one role is required")
        return self

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class ChainSection(_Strict):
    rpc_url: str = "http://127.0.0.1:8545"
    deployment: Path = Path("deployment.json")  # written by `deai cluster up` or a deployer
    stake_wei: Wei = 10**18  # staked when registering
    join: bool = True  # join the Registry at start if not yet registered
    poll_s: PositiveFloat = 0.2  # how often settlement polls the chain


class NodeDataSection(DataSource):
    seed: int = 0  # seeds the split and the partition; equal on every node of a network
    shards: Annotated[int, Field(ge=1)] = 1  # how many providers share the training split
    index: Annotated[int, Field(ge=0)] = 0  # which shard this node holds

    @model_validator(mode="after")
    def _index(self) -> NodeDataSection:
        if self.index >= self.shards:
            raise ValueError(f"data.index: {self.index} must be < data.shards = {self.shards}")
        return self


class FaultSection(_Strict):
    """Fault injection for tests and demos; an honest node leaves this out."""

    train_delay_s: Annotated[float, Field(ge=0)] = 0.0  # sleep before each local training
    behaviour: str = "honest"  # a provider fault from deai.node.faults


class AdmissionSection(_Strict):
    """Who may make this node buffer and store bytes (:mod:`deai.node.admission`)."""

    rate_per_s: PositiveFloat = 200.0  # requests per second per source and per key
    burst: PositiveFloat = 400.0
    open_max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024  # from a non-party key
    unauthenticated_mb: PositiveFloat = 64.0  # buffered before signature checks, in all
    key_quota_mb: PositiveFloat = 512.0  # admitted per key per window
    job_quota_mb: PositiveFloat = 2048.0  # admitted per job per window
    window_s: PositiveFloat = 3600.0

    def build(self) -> AdmissionConfig:
        mb = 1024 * 1024
        return AdmissionConfig(
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            open_max_bytes=self.open_max_bytes,
            unauthenticated_bytes=int(self.unauthenticated_mb * mb),
            key_quota_bytes=int(self.key_quota_mb * mb),
            job_quota_bytes=int(self.job_quota_mb * mb),
            window_s=self.window_s,
        )


class NodeConfig(_Strict):
    node: NodeSection
    admission: AdmissionSection = AdmissionSection()
    chain: ChainSection | None = None
    data: NodeDataSection = NodeDataSection()
    faults: FaultSection = FaultSection()
    peers: dict[str, str] = {}  # static address -> URL map (used before the chain)
    base_dir: Path = Path(".")  # filled by load_node_config: the file's directory

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.base_dir / p

    def password(self) -> PasswordSource:
        f = self.node.password_file
        return PasswordSource(self.path(f) if f is not None else None, self.node.password_env)

    def has(self, role: NodeRole) -> bool:
        return role in self.node.roles


def parse_node_config(
    data: dict[str, Any], source: str = "node.toml", base: Path = Path(".")
) -> NodeConfig:
    if "base_dir" in data:
        raise ConfigError(f"{source}: base_dir: unknown field; check the spelling")
    return validate(NodeConfig, {**data, "base_dir": base}, source, "node config")


def load_node_config(path: str | Path) -> NodeConfig:
    path = Path(path)
    return parse_node_config(read_toml(path, "node config"), str(path), path.parent.resolve())


def parse_job(data: dict[str, Any], source: str = "job.toml") -> JobSpec:
    """A job file's spec (a scenario's ``[simulation]`` table is ignored)."""
    data = {k: v for k, v in data.items() if k != "simulation"}
    return validate(JobSpec, data, source, "job")


def load_job(path: str | Path) -> JobSpec:
    return parse_job(read_toml(path, "job"), str(path))
