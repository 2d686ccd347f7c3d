"""Attack models: data poisoning, model poisoning, Sybils and free-riders, as pure functions.

The runtime needs only :class:`AttackSpec`, :func:`data_attack` and
:func:`apply_update_attack`; the rest is exported for tests and experiments. See
``docs/robustness.md`` for each attack's paper and what its attacker knows.
"""

from deai.attacks.byzantine import (
    AttackError,
    Perturbation,
    alie,
    alie_z_max,
    gamma_search,
    gaussian,
    ipm,
    min_max,
    min_sum,
    perturbation_vector,
    sign_flip,
)
from deai.attacks.data import (
    Corner,
    TriggerSpec,
    add_trigger,
    boost,
    flip_labels,
    poison_dataset,
    replacement_factor,
)
from deai.attacks.freeride import noise, stale, zero
from deai.attacks.spec import (
    AttackName,
    AttackSpec,
    DataTransform,
    apply_update_attack,
    data_attack,
)
from deai.attacks.sybil import clones

__all__ = [
    "AttackError",
    "AttackName",
    "AttackSpec",
    "Corner",
    "DataTransform",
    "Perturbation",
    "TriggerSpec",
    "add_trigger",
    "alie",
    "alie_z_max",
    "apply_update_attack",
    "boost",
    "clones",
    "data_attack",
    "flip_labels",
    "gamma_search",
    "gaussian",
    "ipm",
    "min_max",
    "min_sum",
    "noise",
    "perturbation_vector",
    "poison_dataset",
    "replacement_factor",
    "sign_flip",
    "stale",
    "zero",
]
