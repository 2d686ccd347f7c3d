"""The job specification (everything that decides a job's result) and its TOML form."""

from deai.job.spec import (
    AggregationSpec,
    AlgorithmSpec,
    CodecSpec,
    ContributionSpec,
    DataSchema,
    JobSpec,
    ModelSpec,
    Parties,
    PayoutRule,
    PrivacySpec,
    SettlementSpec,
    UpdatePolicy,
    derive_seed,
)

__all__ = [
    "AggregationSpec",
    "AlgorithmSpec",
    "CodecSpec",
    "ContributionSpec",
    "DataSchema",
    "JobSpec",
    "ModelSpec",
    "Parties",
    "PayoutRule",
    "PrivacySpec",
    "SettlementSpec",
    "UpdatePolicy",
    "derive_seed",
]
