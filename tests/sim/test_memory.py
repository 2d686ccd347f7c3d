"""Memory does not grow with the rounds: once a round's settlement and observers have read
its update stack (providers x parameters) and its parameters before and after, the run's
result keeps them only if asked to (the validator's side: tests/node/test_roles_unit.py).
Keeping the two parameter vectors of every round made a 400-round job of a 12M-parameter
model hold 39 GB and die."""

from __future__ import annotations

from scenario_kit import scenario

from deai.sim.runner import execute, plan

JOB = {
    "rounds": 3,
    "data": {"dataset": "synthetic", "partition": "iid", "n_samples": 300},
    "algorithm": {"name": "fedavg", "steps": 1, "lr": 0.2},
    "nodes": [{"role": "provider", "count": 4}, {"role": "validator", "count": 3}],
}


def test_no_update_stack_is_kept_after_its_round() -> None:
    run = execute(plan(scenario(JOB)))
    assert len(run.outcomes) == 3 and all(o.accepted for o in run.outcomes)
    assert all(o.updates is None for o in run.outcomes)
    assert all(o.params is None and o.start_params is None for o in run.outcomes)
    assert all(len(o.model_hash) == 64 for o in run.outcomes)  # the model is still named


def test_keep_updates_keeps_what_the_validator_saw() -> None:
    run = execute(plan(scenario(JOB)), keep_updates=True)
    for o in run.outcomes:
        assert o.updates is not None and o.updates.shape[0] == len(o.accepted)
        assert o.params is not None and o.start_params is not None
