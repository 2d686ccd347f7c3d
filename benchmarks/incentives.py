"""Contribution evaluators and game-proof payouts on one federated round over digits.

Standalone harness (the runner will replace it): sklearn ``load_digits`` split into a test set,
a small requester validation set, a pre-training set for the shared global model and a pool for
providers. An MLP 64-32-10 is pre-trained briefly; each provider trains it a few local epochs
on its own data and submits the delta. The within-round game is
``utility(S) = −validation loss(global + weighted_mean(updates[S]))`` (FedAvg weights =
claimed example counts), evaluated with no retraining.

Main scenario, 10 providers: four clean of varied size, two with noisy labels (30%, 50%), two
free-riders (an all-zero update; a random update of an honest norm), two attackers (a
sign-flipped update; a sign-flipped update boosted ×5). Free-riders and attackers claim 150 and
100 examples. We compute exact Shapley (1024 coalitions) as the reference, then each estimator,
and report its Spearman correlation with exact Shapley and its cost (distinct utility
evaluations ÷ 2^n). Monte-Carlo estimators run under evaluation budgets and with several
sampling seeds; everything is repeated over several data seeds.

Also: the reward share of attackers and free-riders (budget split in proportion to positive
contribution), the Sybil gain (the largest clean provider split into k identities, each
training on its share: total reward of the identities ÷ its reward as one identity, exact
Shapley), and a controlled sweep of size × label noise.

Issue 16: every value is computed in the payout pipeline a validator runs
(``deai.node.payouts``, rules 1-3, through ``deai.incentives.valuation.applied_values``):
the game is the applied aggregate (rows the default aggregator excludes are no players; the
rest weigh their claims capped at its ``weight_cap`` times the median and play clipped to
its norm bound, rule 4), near-duplicate updates (cosine >= 0.99) are one player valued as
its first member and sharing that value, and the utility is the class-balanced validation
loss (``deai.incentives.valuation.balanced_utility``). Payouts additionally give nothing to
the rows the default aggregator excludes (rule 4's exclusion half; its forfeit of boosted
updates and the multi-round rules 5-7 are not applied to this one round: the rare-class run
through the roles applies them all). Headline keys:
``sybil_gain_max`` over three Sybil strategies (the same update from a second identity; the
same with a 5x inflated claim; the data split in 2 and 3 parts, each trained),
``copier_pair_gain`` (a party trains on a copy of provider 0's data: the pair's pay /
provider 0's pay alone), ``rare_class_provider_paid`` (the share the chain owes the only
holder of class 9 over a 20-round job run through the real roles, ``deai.simulate`` with
settlement, digits split ``rare_class``, the default rule; :func:`rare_class_roles`; the
one-round harness scenario, whose holder has nothing but 9s, is reported beside it),
``estimator_spearman_vs_exact`` and
``estimator_cost_fraction`` of the spec's default evaluator,
``attacker_freerider_reward_share`` with 30% mixed attackers (a sign flipper, a boosted sign
flipper, a noise free-rider). 95% Student-t intervals over data seeds.

Run: ``python benchmarks/incentives.py`` → ``benchmarks/results/incentives.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from deai.aggregation import AggregatorName, build_aggregator
from deai.aggregation.base import RoundContext
from deai.aggregation.default import DefaultConfig
from deai.incentives import (
    CoalitionUtility,
    EvaluatorConfig,
    EvaluatorName,
    evaluate_contributions,
    split_budget,
)
from deai.incentives.valuation import applied_values, balanced_utility

RESULTS = Path(__file__).parent / "results" / "incentives.json"
DATA_SEEDS = (0, 1, 2)  # scenario repetitions (data split, training, noise)
SAMPLER_SEEDS = (0, 1, 2)  # seeds of the Monte-Carlo estimators per scenario
BUDGET_FRACTIONS = (0.02, 0.05)  # MC evaluation budgets, × 2^n
GOAL_COST = 0.05  # best_spearman is taken among estimators costing at most this
N_TEST, N_VAL, N_PRE = 297, 150, 150
HIDDEN = 32
PRE_EPOCHS = 10  # global model pre-training, deliberately short
LOCAL_EPOCHS = 3
BATCH = 16
LR = 0.1
ROUND_BUDGET_WEI = 10**18
SYBIL_KS = (2, 3)
DUPLICATE_COSINE = 0.99  # deai.node.payouts rule 1
RARE_CLASS = 9
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


@dataclass(frozen=True)
class Provider:
    kind: str  # clean | noisy | freerider_zero | freerider_noise | attacker_flip | attacker_boost
    size: int  # examples held (0 for free-riders)
    claimed: int  # example count it reports (the FedAvg weight)
    noise: float = 0.0  # fraction of labels replaced by a random wrong label


MAIN = (  # 30% mixed attackers and free-riders
    Provider("clean", 300, 300),
    Provider("clean", 150, 150),
    Provider("clean", 100, 100),
    Provider("clean", 60, 60),
    Provider("clean", 40, 40),
    Provider("noisy", 200, 200, 0.3),
    Provider("noisy", 150, 150, 0.5),
    Provider("attacker_flip", 100, 100),
    Provider("attacker_boost", 100, 100),
    Provider("freerider_noise", 0, 150),
)
BAD_KINDS = {"freerider_zero", "freerider_noise", "attacker_flip", "attacker_boost"}


@dataclass
class Data:
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    x_pool: Tensor
    y_pool: Tensor
    global_params: Tensor  # [d] the briefly pre-trained shared model
    model: nn.Module  # scratch model whose parameters are overwritten by evaluate


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, gen: torch.Generator) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


def prepare(seed: int, drop_class: int | None = None) -> Data:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    x, y = x[perm], y[perm]
    cut = np.cumsum([N_TEST, N_VAL, N_PRE])
    torch.manual_seed(seed)
    model = make_model()
    gen = torch.Generator().manual_seed(seed)
    x_pre, y_pre = x[cut[1] : cut[2]], y[cut[1] : cut[2]]
    if drop_class is not None:  # the shared model has never seen this class
        keep = y_pre != drop_class
        x_pre, y_pre = x_pre[keep], y_pre[keep]
    train(model, x_pre, y_pre, PRE_EPOCHS, gen)
    return Data(
        x_val=x[cut[0] : cut[1]],
        y_val=y[cut[0] : cut[1]],
        x_test=x[: cut[0]],
        y_test=y[: cut[0]],
        x_pool=x[cut[2] :],
        y_pool=y[cut[2] :],
        global_params=parameters_to_vector(model.parameters()).detach().clone(),
        model=model,
    )


def evaluator(data: Data, x: Tensor, y: Tensor) -> Callable[[Tensor], float]:
    """Negative cross-entropy of a flat parameter vector on (x, y)."""

    def evaluate(params: Tensor) -> float:
        with torch.no_grad():
            vector_to_parameters(params, data.model.parameters())
            return -float(F.cross_entropy(data.model(x), y))

    return evaluate


def accuracy(data: Data, params: Tensor) -> float:
    with torch.no_grad():
        vector_to_parameters(params, data.model.parameters())
        return float((data.model(data.x_test).argmax(1) == data.y_test).float().mean())


def local_update(data: Data, x: Tensor, y: Tensor, seed: int) -> Tensor:
    model = make_model()
    vector_to_parameters(data.global_params.clone(), model.parameters())
    train(model, x, y, LOCAL_EPOCHS, torch.Generator().manual_seed(seed))
    return parameters_to_vector(model.parameters()).detach() - data.global_params


def build_round(data: Data, providers: tuple[Provider, ...], seed: int) -> tuple[Tensor, Tensor]:
    """Each provider's submitted update [n, d] and claimed weight [n]."""
    rng = np.random.default_rng(seed + 1000)
    pool_order = rng.permutation(len(data.x_pool))
    offset = 0
    updates: list[Tensor] = []
    honest_norms: list[float] = []
    pending_noise: list[int] = []
    for i, p in enumerate(providers):
        start = offset
        idx = torch.from_numpy(pool_order[offset : offset + p.size])
        offset += p.size
        if offset > len(pool_order):
            raise ValueError("the providers hold more data than the pool")
        x, y = data.x_pool[idx], data.y_pool[idx].clone()
        if p.noise > 0.0:
            flip = torch.from_numpy(rng.random(len(y)) < p.noise)
            shift = torch.from_numpy(rng.integers(1, 10, len(y)))
            y[flip] = (y[flip] + shift[flip]) % 10  # a random wrong label
        if p.kind == "freerider_zero":
            updates.append(torch.zeros_like(data.global_params))
            continue
        if p.kind == "freerider_noise":
            updates.append(torch.zeros_like(data.global_params))
            pending_noise.append(i)
            continue
        u = local_update(data, x, y, seed * 10_007 + start)  # stable when others split
        if p.kind == "attacker_flip":
            u = -u
        elif p.kind == "attacker_boost":
            u = -5.0 * u
        else:
            honest_norms.append(float(u.norm()))
        updates.append(u)
    gen = torch.Generator().manual_seed(seed + 7)
    for i in pending_noise:  # random direction with the median honest norm
        g = torch.randn(data.global_params.shape, generator=gen)
        updates[i] = g * (float(np.median(honest_norms)) / float(g.norm()))
    weights = torch.tensor([float(p.claimed) for p in providers])
    return torch.stack(updates), weights


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v), dtype=np.float64)
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0.0 or rb.std() == 0.0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def interval(xs: list[float]) -> dict[str, float]:
    """Mean, 95% Student-t half-width, min, max and count."""
    a = np.asarray(xs, dtype=np.float64)
    n = len(a)
    h = T95.get(n - 1, 1.96) * float(a.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0
    return {
        "mean": float(a.mean()),
        "ci95": float(h),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": n,
    }


def utility(data: Data) -> Callable[[Tensor], float]:
    """The class-balanced validation loss of the payout pipeline (rule 2)."""

    def forward(params: Tensor, x: Tensor) -> Tensor:
        vector_to_parameters(params, data.model.parameters())
        return data.model(x)

    return balanced_utility(forward, data.x_val, data.y_val)


def pipeline_values(
    data: Data,
    updates: Tensor,
    claims: Tensor,
    excluded: tuple[int, ...],
    evaluate: Callable[[CoalitionUtility], Tensor],
) -> tuple[Tensor, int]:
    """Per-row values under the payout pipeline's rules 1-3 (``deai.incentives.valuation.
    applied_values``, the function ``deai.node.payouts`` calls): the game of the applied
    aggregate (excluded rows are no players and get 0; the rest weigh their claims capped
    and play clipped as the default aggregator caps and clips them), near-duplicates one
    player, balanced utility; and the utility evaluations spent."""
    u = utility(data)

    def game_for(ups: Tensor, w: Tensor) -> CoalitionUtility:
        return CoalitionUtility(data.global_params, ups, w, u)

    values, evals, _ = applied_values(
        game_for,
        updates,
        claims,
        excluded,
        evaluate,
        DUPLICATE_COSINE,
        DefaultConfig.weight_cap,
        DefaultConfig.norm_multiplier,  # rule 4: the players play clipped to the bound
    )
    return values, evals


def excluded_by_default(updates: Tensor, claims: Tensor) -> tuple[int, ...]:
    """Rows the default aggregator (the spec default, fresh state) excludes this round."""
    agg = build_aggregator(AggregatorName.DEFAULT)
    senders = tuple(f"p{i}" for i in range(updates.shape[0]))
    return agg(updates, claims, RoundContext(senders=senders)).excluded


def shares(values: Tensor, excluded: tuple[int, ...] = ()) -> np.ndarray:
    pay = split_budget(values, ROUND_BUDGET_WEI, excluded=excluded)
    return np.asarray(pay.amounts, dtype=np.float64) / ROUND_BUDGET_WEI


def exact(game: CoalitionUtility) -> Tensor:
    return evaluate_contributions(game, EvaluatorConfig(EvaluatorName.EXACT)).values


def estimator_configs(n: int) -> list[tuple[str, EvaluatorConfig, bool]]:
    """(label, config, sampled) for every estimator variant."""
    out: list[tuple[str, EvaluatorConfig, bool]] = [
        ("loo", EvaluatorConfig(EvaluatorName.LOO), False),
        ("loss_reduction", EvaluatorConfig(EvaluatorName.LOSS_REDUCTION), False),
        ("cosine", EvaluatorConfig(EvaluatorName.COSINE), False),
    ]
    for name in (EvaluatorName.TMC, EvaluatorName.GTG):
        for frac in BUDGET_FRACTIONS:
            budget = int(frac * 2**n)
            out.append((f"{name}@{frac}", EvaluatorConfig(name, max_evaluations=budget), True))
        out.append((f"{name}@converged", EvaluatorConfig(name), True))
    return out


def spec_default_evaluator() -> tuple[str, EvaluatorConfig]:
    """The evaluator a job spec uses when it names none (deai.job.spec.ContributionSpec)."""
    from deai.job.spec import ContributionSpec

    c = ContributionSpec()
    cfg = EvaluatorConfig(c.evaluator, max_permutations=c.max_permutations)
    return f"{c.evaluator.value} (spec default)", cfg


def spec_values(cfg: EvaluatorConfig) -> Callable[[CoalitionUtility], Tensor]:
    """``cfg`` under the spec's default budget for each game (``ContributionSpec.
    evaluations_for`` its players, as ``deai.node.payouts`` runs it)."""
    from deai.job.spec import ContributionSpec

    def values(game: CoalitionUtility) -> Tensor:
        budget = ContributionSpec().evaluations_for(game.n)
        return evaluate_contributions(game, replace(cfg, max_evaluations=budget)).values

    return values


def main_scenario(seed: int) -> dict[str, object]:
    """30% mixed attackers: each estimator against exact Shapley, and the bad share."""
    data = prepare(seed)
    updates, claims = build_round(data, MAIN, seed)
    n = updates.shape[0]
    excluded = excluded_by_default(updates, claims)
    t0 = time.perf_counter()
    ref, _ = pipeline_values(data, updates, claims, excluded, exact)
    exact_s = time.perf_counter() - t0
    bad = [i for i, p in enumerate(MAIN) if p.kind in BAD_KINDS]
    rows: dict[str, dict[str, list[float]]] = {}
    label_d, cfg_d = spec_default_evaluator()
    configs = [*estimator_configs(n), (label_d, cfg_d, cfg_d.name in ("tmc", "gtg"))]
    for label, cfg, sampled in configs:
        for s in SAMPLER_SEEDS if sampled else (0,):
            c = replace(cfg, seed=s)
            values = (
                spec_values(c)
                if label == label_d
                else lambda g, c=c: evaluate_contributions(g, c).values
            )
            vals, evals = pipeline_values(data, updates, claims, excluded, values)
            row = rows.setdefault(label, {"spearman": [], "cost": [], "bad_share": []})
            row["spearman"].append(spearman(vals.numpy(), ref.numpy()))
            row["cost"].append(evals / 2**n)
            row["bad_share"].append(float(shares(vals, excluded)[bad].sum()))
    pay = shares(ref, excluded)
    rows["exact"] = {"spearman": [1.0], "cost": [1.0], "bad_share": [float(pay[bad].sum())]}
    # finding 7: the largest single share in an all-honest round (the 7 honest providers)
    keep = [i for i in range(n) if i not in bad]
    honest, honest_claims = updates[keep], claims[keep]
    honest_excluded = excluded_by_default(honest, honest_claims)
    top: dict[str, float] = {}
    for label, cfg in (
        ("exact", EvaluatorConfig(EvaluatorName.EXACT)),
        ("loo", EvaluatorConfig(EvaluatorName.LOO)),
        ("gtg", EvaluatorConfig(EvaluatorName.GTG, seed=0)),
        ("tmc", EvaluatorConfig(EvaluatorName.TMC, seed=0)),
    ):
        vals, _ = pipeline_values(
            data,
            honest,
            honest_claims,
            honest_excluded,
            lambda g, c=cfg: evaluate_contributions(g, c).values,
        )
        top[label] = float(shares(vals, honest_excluded).max())
    return {
        "exact_values": ref.tolist(),
        "exact_payout_share": pay.tolist(),
        "excluded_by_default_rule": list(excluded),
        "exact_seconds": exact_s,
        "test_acc_global": accuracy(data, data.global_params),
        "rows": rows,
        "max_share_all_honest": top,
    }


def _pay_of(data: Data, updates: Tensor, claims: Tensor, idx: list[int]) -> float:
    excluded = excluded_by_default(updates, claims)
    vals, _ = pipeline_values(data, updates, claims, excluded, exact)
    return float(shares(vals, excluded)[idx].sum())


def sybil(seed: int) -> dict[str, float]:
    """Sybil gains of provider 0 (pay of its identities / its pay as one identity)."""
    data = prepare(seed)
    updates, claims = build_round(data, MAIN, seed)
    solo = _pay_of(data, updates, claims, [0])
    n = updates.shape[0]
    out: dict[str, float] = {}
    twice = torch.cat([updates, updates[:1]])
    out["duplicate_update"] = _pay_of(data, twice, torch.cat([claims, claims[:1]]), [0, n]) / solo
    inflated = torch.cat([claims, 5.0 * claims[:1]])
    out["duplicate_update_inflated_claim"] = _pay_of(data, twice, inflated, [0, n]) / solo
    base = MAIN[0]
    for k in SYBIL_KS:
        parts = [base.size // k + (1 if j < base.size % k else 0) for j in range(k)]
        split = tuple(Provider("clean", s, s) for s in parts) + MAIN[1:]
        u, w = build_round(data, split, seed)
        out[f"split_data_{k}"] = _pay_of(data, u, w, list(range(k))) / solo
    return out


def copier(seed: int) -> dict[str, float]:
    """A party trains on a copy of provider 0's data (its own training seed)."""
    data = prepare(seed)
    updates, claims = build_round(data, MAIN, seed)
    solo = _pay_of(data, updates, claims, [0])
    order = np.random.default_rng(seed + 1000).permutation(len(data.x_pool))
    idx = torch.from_numpy(order[: MAIN[0].size])  # provider 0's examples (build_round's draw)
    copy = local_update(data, data.x_pool[idx], data.y_pool[idx], seed * 10_007 + 99_991)
    both = torch.cat([updates, copy.unsqueeze(0)])
    n = updates.shape[0]
    pair = _pay_of(data, both, torch.cat([claims, claims[:1]]), [0, n])
    cos = float(F.cosine_similarity(updates[0], copy, dim=0))
    return {"pair_gain": pair / solo, "victim_solo_share": solo, "pair_share": pair, "cosine": cos}


def rare_class(seed: int) -> dict[str, float]:
    """Six honest providers without class 9 and one holding all of its training examples
    (about 120); class 9 is absent from pre-training. Payout share of the rare provider
    under exact Shapley and under the spec default evaluator, and the test accuracy on
    class 9 with and without its update."""
    data = prepare(seed, drop_class=RARE_CLASS)
    rng = np.random.default_rng(seed + 2000)
    order = rng.permutation(len(data.x_pool))
    common = [int(i) for i in order if int(data.y_pool[i]) != RARE_CLASS]
    rare = [int(i) for i in order if int(data.y_pool[i]) == RARE_CLASS]  # all of the pool's
    sizes = (150, 100, 100, 80, 60, 60)
    ups, off = [], 0
    for j, size in enumerate(sizes):
        idx = torch.tensor(common[off : off + size])
        off += size
        ups.append(local_update(data, data.x_pool[idx], data.y_pool[idx], seed * 10_007 + j))
    ridx = torch.tensor(rare)
    ups.append(local_update(data, data.x_pool[ridx], data.y_pool[ridx], seed * 10_007 + 77))
    updates = torch.stack(ups)
    claims = torch.tensor([float(s) for s in (*sizes, len(rare))])
    excluded = excluded_by_default(updates, claims)
    vals, _ = pipeline_values(data, updates, claims, excluded, exact)
    kept_all, _ = pipeline_values(data, updates, claims, (), exact)
    _, cfg = spec_default_evaluator()
    dvals, _ = pipeline_values(
        data,
        updates,
        claims,
        excluded,
        spec_values(replace(cfg, seed=0)),
    )
    mask = data.y_test == RARE_CLASS

    def class_acc(params: Tensor) -> float:
        with torch.no_grad():
            vector_to_parameters(params, data.model.parameters())
            pred = data.model(data.x_test[mask]).argmax(1)
        return float((pred == RARE_CLASS).float().mean())

    with_all = data.global_params + updates.mean(dim=0)
    without = data.global_params + updates[:-1].mean(dim=0)
    return {
        "share_exact": float(shares(vals, excluded)[-1]),
        "share_exact_if_not_excluded": float(shares(kept_all)[-1]),
        "share_default_evaluator": float(shares(dvals, excluded)[-1]),
        "excluded_by_default_rule": float(len(updates) - 1 in excluded),
        "class_accuracy_with": class_acc(with_all),
        "class_accuracy_without": class_acc(without),
    }


ROLES_PROVIDERS = 7  # rare-class run through the roles: 6 IID + the only holder of class 9
ROLES_ROUNDS = 20
ROLES_RULES = ("default", "mean")


def rare_class_roles(seed: int, rule: str) -> dict[str, float]:
    """The rare class through the real roles (``deai.simulate``, settlement on the embedded
    chain, the spec's payout rules): digits split ``rare_class`` (every digit 9 held by the
    last of ``ROLES_PROVIDERS`` providers, which also holds an IID share of the rest; nobody
    else has a 9), ``ROLES_ROUNDS`` rounds of FedAvg under ``rule``. The rare provider's
    share of what the chain owes, its rounds excluded, and the final model's test accuracy
    on class 9 and on the rest."""
    import deai

    job = deai.JobSpec(
        name="rare-class",
        rounds=ROLES_ROUNDS,
        seed=seed,
        model=deai.ModelSpec(name="mlp", hidden=[64]),
        aggregation=deai.AggregationSpec(rule=rule),
        settlement=deai.SettlementSpec(),
    )
    world = deai.SimulationSection(
        data=deai.DataSource(dataset="digits", partition="rare_class"),
        nodes=[
            deai.NodeGroup(role="provider", count=ROLES_PROVIDERS),
            deai.NodeGroup(role="validator"),
        ],
    )
    r = deai.simulate(job, world)
    if r.settlement_errors:
        raise RuntimeError(f"rare-class run seed {seed}: {r.settlement_errors}")
    rare = f"provider-{ROLES_PROVIDERS - 1:03d}"
    owed = {p.provider: p.owed_wei for p in r.payouts}
    test = world.data.load(seed).test
    with torch.no_grad():
        pred = r.model()(test.x).argmax(1)
    mask = test.y == int(test.y.max())
    return {
        "share": owed[rare] / max(1, sum(owed.values())),
        "honest_unpaid": float(sum(v == 0 for k, v in owed.items() if k != rare)),
        "rounds_excluded": float(sum(rare in rr.excluded for rr in r.rounds)),
        "class_accuracy": float((pred[mask] == test.y[mask]).float().mean()),
        "other_accuracy": float((pred[~mask] == test.y[~mask]).float().mean()),
        "final_accuracy": r.final_accuracy,
    }


def summarise(mains: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    labels = list(mains[0]["rows"])  # type: ignore[call-overload]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label in labels:
        table[label] = {
            key: interval([x for m in mains for x in m["rows"][label][key]])  # type: ignore[index]
            for key in ("spearman", "cost", "bad_share")
        }
    return table


def markdown(r: dict[str, object]) -> str:
    """The docs block (between the incentives-table markers)."""
    h = r["headline"]  # type: ignore[index]

    def ci(s: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
        return f"{scale * s['mean']:.{digits}f} ± {scale * s['ci95']:.{digits}f}"

    g = {True: "met", False: "**NOT met**"}
    lines = [
        "_Generated by `benchmarks/incentives.py` from `benchmarks/results/incentives.json`;"
        " do not edit by hand._",
        "",
        f"Mean ± 95% Student-t half-width over data seeds {list(DATA_SEEDS)} (Monte-Carlo"
        f" estimators also over sampler seeds {list(SAMPLER_SEEDS)}). Every value is computed in"
        " the payout pipeline (the game of the applied aggregate: excluded rows no players,"
        " capped claims as weights; near-duplicates one player; class-balanced utility)."
        "",
        "| key | value | goal | |",
        "|---|---|---|---|",
    ]
    for key, goal in r["goals"].items():  # type: ignore[attr-defined]
        v = h[key]  # type: ignore[index]
        lines.append(f"| `{key}` | {ci(v, digits=4)} | {goal} | {g[r['goal_met'][key]]} |")  # type: ignore[index]
    lines += [
        "",
        f"Default evaluator: `{h['estimator']}`.",  # type: ignore[index]
        "",
        "Sybil strategies (pay of the identities ÷ pay as one identity, exact Shapley):",
        "",
        "| strategy | gain |",
        "|---|---|",
    ]
    for k, v in r["sybil"].items():  # type: ignore[attr-defined]
        lines.append(f"| {k} | {ci(v)} |")
    cp, rc, top = r["copier"], r["rare_class"], r["max_share_all_honest"]  # type: ignore[index]
    lines += [
        "",
        f"Copier: cosine of its update to the victim's {ci(cp['cosine'])}; victim's solo share"  # type: ignore[index]
        f" {ci(cp['victim_solo_share'])}, the pair's {ci(cp['pair_share'])}.",  # type: ignore[index]
        "",
        f"Rare class, one round (the only holder of class {RARE_CLASS}, holding nothing"
        " else; harness): share under the default"
        f" evaluator {ci(rc['share_default_evaluator'])}, under exact Shapley"  # type: ignore[index]
        f" {ci(rc['share_exact'])} ({ci(rc['share_exact_if_not_excluded'])} if the"  # type: ignore[index]
        f" aggregator's exclusion were not applied); excluded by the default rule in"
        f" {ci(rc['excluded_by_default_rule'], digits=2)} of the seeds; class-{RARE_CLASS}"  # type: ignore[index]
        f" test accuracy after the round {ci(rc['class_accuracy_with'])} with its update,"  # type: ignore[index]
        f" {ci(rc['class_accuracy_without'])} without.",  # type: ignore[index]
        "",
        "Rare class through the roles (`rare_class_roles`: 7 providers, digits split"
        " `rare_class`, 20 rounds, settlement on the embedded chain, the spec's payout rules):",
        "",
        "| rule | rare provider's share | rounds excluded | class-9 accuracy | other classes"
        " | honest providers unpaid |",
        "|---|---|---|---|---|---|",
    ]
    for rule, v in r["rare_class_roles"].items():  # type: ignore[attr-defined]
        lines.append(
            f"| {rule} | {ci(v['share'])} | {ci(v['rounds_excluded'], digits=1)} |"
            f" {ci(v['class_accuracy'])} | {ci(v['other_accuracy'])} |"
            f" {ci(v['honest_unpaid'], digits=1)} |"
        )
    lines += [
        "",
        "Under the default rule the rare provider is paid although the model does not learn"
        " class 9 (the coordinate-wise trimmed mean after nearest-neighbour mixing trims the"
        " one row that moves class 9's weights): the game values coalitions by the weighted"
        " mean of the clipped rows, not by the robust centre, so it credits an update the"
        " centre mostly discards. Under the plain mean the model learns the class and the"
        " payout follows.",
        "",
        "Largest single share in an all-honest round (the 7 honest providers): "
        + ", ".join(f"{k} {ci(v)}" for k, v in top.items())  # type: ignore[attr-defined]
        + ".",
    ]
    lines += [
        "",
        "Estimators against exact Shapley (10 providers, 30% mixed attackers; cost = distinct"
        " utility evaluations ÷ 2^10; bad share = payout share of attackers and free-riders):",
        "",
        "| estimator | Spearman | cost | bad share |",
        "|---|---|---|---|",
    ]
    for k, v in r["estimators"].items():  # type: ignore[attr-defined]
        lines.append(f"| {k} | {ci(v['spearman'])} | {ci(v['cost'])} | {ci(v['bad_share'])} |")
    return "\n".join(lines)


def write_docs(r: dict[str, object]) -> None:
    from docs_table import write_block

    write_block(
        Path(__file__).resolve().parents[1] / "docs" / "incentives.md",
        "incentives-table",
        markdown(r),
    )


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    if "--render-only" in sys.argv:
        write_docs(json.loads(RESULTS.read_text()))
        return
    mains = [main_scenario(s) for s in DATA_SEEDS]
    table = summarise(mains)
    label_d, _ = spec_default_evaluator()
    sybils = [sybil(s) for s in DATA_SEEDS]
    copiers = [copier(s) for s in DATA_SEEDS]
    rares = [rare_class(s) for s in DATA_SEEDS]
    roles = {rule: [rare_class_roles(s, rule) for s in DATA_SEEDS] for rule in ROLES_RULES}
    sybil_table = {k: interval([x[k] for x in sybils]) for k in sybils[0]}
    worst_sybil = max(sybil_table, key=lambda k: sybil_table[k]["mean"])
    headline = {
        "sybil_gain_max": sybil_table[worst_sybil],
        "copier_pair_gain": interval([c["pair_gain"] for c in copiers]),
        "rare_class_provider_paid": interval([x["share"] for x in roles["default"]]),
        "estimator_spearman_vs_exact": table[label_d]["spearman"],
        "estimator_cost_fraction": table[label_d]["cost"],
        "attacker_freerider_reward_share": table[label_d]["bad_share"],
    }
    goals = {
        "sybil_gain_max": "<= 1.0",
        "copier_pair_gain": "<= 1.0",
        "rare_class_provider_paid": "> 0",
        "estimator_spearman_vs_exact": ">= 0.95",
        "estimator_cost_fraction": "<= 0.05",
        "attacker_freerider_reward_share": "<= 0.01",
    }
    met = {
        "sybil_gain_max": headline["sybil_gain_max"]["mean"] <= 1.0,
        "copier_pair_gain": headline["copier_pair_gain"]["mean"] <= 1.0,
        "rare_class_provider_paid": headline["rare_class_provider_paid"]["min"] > 0.0,
        "estimator_spearman_vs_exact": headline["estimator_spearman_vs_exact"]["mean"] >= 0.95,
        "estimator_cost_fraction": headline["estimator_cost_fraction"]["max"] <= GOAL_COST,
        "attacker_freerider_reward_share": headline["attacker_freerider_reward_share"]["mean"]
        <= 0.01,
    }
    headline["estimator"] = label_d
    headline["worst_sybil_strategy"] = worst_sybil
    results = {
        "headline": headline,
        "goals": goals,
        "goal_met": met,
        **{k: v for k, v in headline.items()},
        "estimators": table,
        "sybil": sybil_table,
        "copier": {k: interval([c[k] for c in copiers]) for k in copiers[0]},
        "rare_class": {k: interval([x[k] for x in rares]) for k in rares[0]},
        "rare_class_roles": {
            rule: {k: interval([x[k] for x in xs]) for k in xs[0]} for rule, xs in roles.items()
        },
        "max_share_all_honest": {
            k: interval([m["max_share_all_honest"][k] for m in mains])  # type: ignore[index]
            for k in ("exact", "loo", "gtg", "tmc")
        },
        "scenarios": [
            {k: v for k, v in m.items() if k not in ("rows", "max_share_all_honest")} for m in mains
        ],
        "setup": {
            "providers": [p.__dict__ for p in MAIN],
            "data_seeds": list(DATA_SEEDS),
            "sampler_seeds": list(SAMPLER_SEEDS),
            "budget_fractions": list(BUDGET_FRACTIONS),
            "utility": "class-balanced cross-entropy on the requester's 150 validation digits",
            "game": "the applied aggregate: excluded rows no players, capped claims as weights;"
            " near-duplicates (cosine >= 0.99) one player valued as its first member",
            "payout": "positive values, default aggregator's excluded rows earn nothing",
            "model": f"MLP 64-{HIDDEN}-10, pre-trained {PRE_EPOCHS} epochs on {N_PRE} digits",
            "local_training": f"SGD lr={LR}, batch {BATCH}, {LOCAL_EPOCHS} epochs",
            "cost_unit": "distinct utility evaluations / 2^n",
        },
        "wall_seconds": time.perf_counter() - t0,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"headline": headline, "goal_met": met}, indent=2))
    write_docs(results)


if __name__ == "__main__":
    main()
