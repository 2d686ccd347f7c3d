"""deai.incentives: who gets paid what.

Contribution evaluators over the within-round game (:mod:`.game`): exact Shapley, truncated
Monte-Carlo Shapley and GTG-Shapley (:mod:`.shapley`), leave-one-out (:mod:`.loo`), cheap
proxies (:mod:`.proxies`), chosen by :class:`EvaluatorName` through :mod:`.evaluators`. Reward
rules (exact integer budget split, reputation, selection) in :mod:`.rewards`; ex-ante pricing
(budget-feasible reverse auction, Stackelberg pricing) in :mod:`.pricing`. See docs/incentives.md.
"""

from deai.incentives.evaluators import (
    EVALUATORS,
    Contributions,
    EvaluatorConfig,
    EvaluatorName,
    evaluate_contributions,
)
from deai.incentives.game import CoalitionUtility, mean_update
from deai.incentives.loo import leave_one_out
from deai.incentives.pricing import (
    AuctionResult,
    StackelbergEquilibrium,
    follower_best_response,
    follower_equilibrium,
    proportional_share_auction,
    stackelberg_pricing,
)
from deai.incentives.proxies import cosine_to_aggregate, loss_reduction
from deai.incentives.rewards import (
    Payout,
    Reputation,
    ReputationConfig,
    RewardConfig,
    StakeWeighting,
    payout_scores,
    select_participants,
    split_budget,
)
from deai.incentives.shapley import exact_shapley, gtg_shapley, tmc_shapley

__all__ = [
    "EVALUATORS",
    "AuctionResult",
    "CoalitionUtility",
    "Contributions",
    "EvaluatorConfig",
    "EvaluatorName",
    "Payout",
    "Reputation",
    "ReputationConfig",
    "RewardConfig",
    "StackelbergEquilibrium",
    "StakeWeighting",
    "cosine_to_aggregate",
    "evaluate_contributions",
    "exact_shapley",
    "follower_best_response",
    "follower_equilibrium",
    "gtg_shapley",
    "leave_one_out",
    "loss_reduction",
    "mean_update",
    "payout_scores",
    "proportional_share_auction",
    "select_participants",
    "split_budget",
    "stackelberg_pricing",
    "tmc_shapley",
]
