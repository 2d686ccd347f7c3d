"""Memory does not grow with the rounds: once a round's settlement and observers have read
its update stack (providers x parameters), the run's result keeps it only if asked to
(the validator's side: tests/node/test_roles_unit.py)."""

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


def test_keep_updates_keeps_what_the_validator_saw() -> None:
    run = execute(plan(scenario(JOB)), keep_updates=True)
    for o in run.outcomes:
        assert o.updates is not None and o.updates.shape[0] == len(o.accepted)
