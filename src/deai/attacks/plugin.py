"""The built-in attacks as :data:`deai.registry.attacks` entries.

A built-in entry returns an :class:`~deai.attacks.spec.AttackSpec` (its data-level part
runs in the node's training, its update-level part is applied by the simulated
adversary). A user attack registered with ``@deai.attacks.register("name")`` is a factory
``factory(seed: int, **params)`` returning an object with the provider ``Behaviour``
methods ``local_data(x, y)``, ``update(delta, round_)`` and ``claim(num_examples)``;
providers running it are scored as attackers.
"""

from __future__ import annotations

from typing import Any

from deai.attacks.spec import AttackName, AttackSpec


def _factory(name: AttackName) -> Any:
    def factory(**params: Any) -> AttackSpec:
        return AttackSpec(name, params)

    factory.__doc__ = f"The built-in {name.value} attack (deai.attacks)."
    return factory


none = _factory(AttackName.NONE)
label_flip = _factory(AttackName.LABEL_FLIP)
backdoor = _factory(AttackName.BACKDOOR)
sign_flip = _factory(AttackName.SIGN_FLIP)
gaussian = _factory(AttackName.GAUSSIAN)
alie = _factory(AttackName.ALIE)
ipm = _factory(AttackName.IPM)
min_max = _factory(AttackName.MIN_MAX)
min_sum = _factory(AttackName.MIN_SUM)
adaptive = _factory(AttackName.ADAPTIVE)
free_rider_zero = _factory(AttackName.FREE_RIDER_ZERO)
free_rider_stale = _factory(AttackName.FREE_RIDER_STALE)
free_rider_noise = _factory(AttackName.FREE_RIDER_NOISE)
