"""Strategies: the server-side rule of a job, apart from the validator's round state
machine (after Flower's ``Strategy``, without its copied ``aggregate_fit``).

A strategy answers two questions, from the spec alone:

* ``configure_train(round_)``: which providers train this round;
* ``aggregate_train(round_, params, inputs)``: what the round's accepted updates (or their
  secure sum) make of the global parameters.

:class:`ServerStrategy` is FedAvg / Parallel SGD with any registered aggregation rule and
the server step (optionally with server momentum, FedAvgM). DP wraps it
(:class:`deai.node.dp.DPStrategy`) instead of branching inside it. A rule that cannot run on
the rows a round delivered (Krum with too few updates after drop-outs) applies no update
and says why; it never stops the job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from deai.aggregation.base import Aggregator, RoundContext
from deai.errors import AggregationError
from deai.job.spec import JobSpec, ServerOptimizer, Weighting
from deai.node.base import participants
from deai.node.hooks import RoundPrivacy

if TYPE_CHECKING:
    from deai.aggregation.sentinel import BackdoorSentinel
    from deai.llm.outer import OuterAdamW, OuterNesterov


@dataclass(frozen=True)
class Updates:
    """A round's accepted plaintext updates, in draw order."""

    senders: tuple[str, ...]
    stack: Tensor  # [n, d]
    examples: tuple[int, ...]  # claimed example counts (already checked against the policy)


@dataclass(frozen=True)
class SecureSum:
    """Only the sum of the contributors' updates (secure aggregation)."""

    contributors: tuple[str, ...]
    total: Tensor  # [d]


@dataclass(frozen=True)
class RoundResult:
    params: Tensor  # [d] the global parameters after the round
    applied: bool  # False: the round left the model unchanged (see ``note``)
    accepted: tuple[str, ...]  # whose updates are in it
    excluded: tuple[str, ...] = ()  # accepted updates the rule left out (weight 0)
    weights: tuple[float, ...] = ()  # weight of each accepted update before the rule
    # (capped example counts or 1); the rule's exclusions are in ``excluded``
    note: str = ""  # why no update was applied, or what the rule did of note
    privacy: RoundPrivacy | None = None


Reference = Callable[[int, Tensor], Tensor | None]  # (round, params) -> trusted update


class Strategy(ABC):
    """The server-side rule of one job. One instance per validator and job."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def configure_train(self, round_: int) -> tuple[str, ...]:
        """Providers drawn for ``round_`` (public: every party recomputes it)."""
        return participants(self.spec, round_)

    @abstractmethod
    def aggregate_train(
        self, round_: int, params: Tensor, inputs: Updates | SecureSum
    ) -> RoundResult: ...

    def stop_reason(self, round_: int) -> str | None:
        """Why the job cannot run ``round_`` (e.g. a spent privacy budget), or None."""
        return None


class ServerStrategy(Strategy):
    """FedAvg and Parallel SGD: ``theta <- theta + eta * v``, ``v <- beta v + agg``, where
    ``agg`` is the configured rule over the accepted updates (weighted by capped claimed
    example counts or uniformly, as the algorithm says)."""

    def __init__(
        self,
        spec: JobSpec,
        aggregator: Aggregator,
        reference: Reference | None = None,
        sentinel: BackdoorSentinel | None = None,
    ) -> None:
        super().__init__(spec)
        self.aggregator = aggregator
        self.reference = reference  # FLTrust's root update, computed by the validator
        self.sentinel = sentinel  # the default rule's backdoor sentinel, when it runs
        self.velocity: Tensor | None = None
        self.outer: OuterNesterov | OuterAdamW | None = None  # a stateful outer optimizer

    def weights(self, inputs: Updates) -> Tensor:
        cap = self.spec.policy.max_examples
        if self.spec.algorithm.weights() is Weighting.EXAMPLES:
            return torch.tensor([float(min(e, cap)) for e in inputs.examples])
        return torch.ones(len(inputs.senders))

    def step(self, params: Tensor, agg: Tensor) -> Tensor:
        alg = self.spec.algorithm
        if alg.server_optimizer is not ServerOptimizer.SGD:  # DiLoCo / its DP baseline
            if self.outer is None:
                from deai.llm.outer import OuterAdamW, OuterNesterov

                self.outer = (
                    OuterNesterov(alg.step_size(), alg.server_momentum)
                    if alg.server_optimizer is ServerOptimizer.NESTEROV
                    else OuterAdamW(alg.step_size())
                )
            return self.outer.step(params, agg)
        beta = self.spec.algorithm.server_momentum
        if beta > 0:
            self.velocity = agg if self.velocity is None else beta * self.velocity + agg
            agg = self.velocity
        return params + self.spec.algorithm.step_size() * agg

    def aggregate_train(
        self, round_: int, params: Tensor, inputs: Updates | SecureSum
    ) -> RoundResult:
        if isinstance(inputs, SecureSum):  # only the job's DP wrapper takes secure sums
            raise AggregationError("a plain strategy cannot aggregate a secure sum")
        if not inputs.senders:
            return RoundResult(params, False, (), note="no valid update arrived: no update")
        w = self.weights(inputs)
        notes: list[str] = []
        if self.sentinel is not None:
            notes.append(self.sentinel.scan(round_, params))
            out, _ = self.sentinel.suspects(inputs.stack, inputs.senders)
            left = [i for i, s in enumerate(inputs.senders) if s in out]
            if left:
                w = w.clone()
                w[left] = 0.0
                notes.append(f"backdoor sentinel left out {len(left)} update(s)")
        rule = self.spec.aggregation.rule
        ref = self.reference(round_, params) if self.reference is not None else None
        ctx = RoundContext(senders=inputs.senders, round=round_, reference=ref)
        try:
            agg = self.aggregator(inputs.stack, w, ctx)
        except AggregationError as e:
            return RoundResult(
                params,
                False,
                inputs.senders,
                weights=tuple(w.tolist()),
                note=f"{rule} could not run on {len(inputs.senders)} updates ({e}): no update",
            )
        excluded = tuple(inputs.senders[i] for i in agg.excluded)
        new = self.step(params, agg.vector)
        if self.sentinel is not None:
            new = self.sentinel.unlearn_round(new)
        note = "; ".join(n for n in notes if n)
        return RoundResult(new, True, inputs.senders, excluded, tuple(w.tolist()), note=note)
