"""Privacy-plane measurements -> benchmarks/results/privacy.json (issue 14).

    .venv/bin/python benchmarks/privacy.py [--quick] [--only KEY ...] [--render-only]

Every headline key of the JSON is one function below, registered with ``@headline``; the
function reads the experiment it needs from :class:`Lab`, which runs each experiment once
(cached) and keeps its full record under ``details``. ``--only`` computes some keys and
merges them into the existing file. The tables in docs/privacy.md are generated from the
JSON (``--render-only`` rewrites them without running anything).

Experiments (all seeded; one torch thread; sizes chosen for a shared 2-core machine):

* ``secagg``: one secure-aggregation round in memory (the real state machines, every
  message encoded), d = 2^20, n in {10, 50, 100}, drop-outs after key sharing; bytes a
  client sends *and* receives, against its plain 16-bit update.
* ``mitm``: the real node roles on the simulated transport, 20 providers, the coordinator's
  relay swapping every encryption key and re-encrypting shares (``privacy.secagg.mitm``);
  plus the same attack against clients that do not check signatures, as the control.
* ``mia``: membership inference on scikit-learn's digits, 64-64-10 ReLU MLP, 200 members
  and 200 non-members (20 per class each), target trained non-privately (Adam, 400
  full-batch steps, converged) or with DP-SGD through Opacus at eps = 4 (C = 1, q = 0.1,
  300 steps); loss-threshold attack and offline LiRA with 16 reference models trained by
  the attacker with the target's recipe on class-balanced draws from the other 1397
  digits; 10 seeds (new split, new models each), Student-t 95 % intervals.
* ``inversion``: batch DLG with known labels and the analytic first-layer attack on a
  64-256-10 ReLU MLP, against no defence, clipping, DP noise and secure sums of 10 and 100
  single-example updates; 10 seeds.
* ``pii``: the labelled corpus of tests/privacy/data/pii_corpus.jsonl, recall and
  precision per kind, for ``scrub_text`` and for the old regex set.
* ``dp_fedavg`` and ``groupwise``: as before (library-level).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "privacy.json"
DOC = ROOT / "docs" / "privacy.md"
sys.path.insert(0, str(Path(__file__).parent))

Json = dict[str, Any]


# --------------------------------------------------------------------------- registry

HEADLINES: dict[str, Callable[[Lab], Any]] = {}
GOALS: dict[str, str] = {}


def headline(name: str, goal: str = "") -> Callable[[Callable[[Lab], Any]], Callable[[Lab], Any]]:
    """Register ``fn(lab) -> value`` as the top-level JSON key ``name``."""

    def register(fn: Callable[[Lab], Any]) -> Callable[[Lab], Any]:
        HEADLINES[name] = fn
        if goal:
            GOALS[name] = goal
        return fn

    return register


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


class Lab:
    """Runs each experiment at most once; ``details`` collects their records."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.details: Json = {}

    def _keep(self, name: str, record: Any) -> Any:
        self.details[name] = record
        return record

    @functools.cached_property
    def secagg(self) -> list[Json]:
        return self._keep("secagg", run_secagg(1 << (14 if self.quick else 20)))

    @functools.cached_property
    def mitm(self) -> Json:
        return self._keep("mitm", run_mitm(10 if self.quick else 20))

    @functools.cached_property
    def mia(self) -> Json:
        seeds, refs = (3, 4) if self.quick else (10, 16)
        return self._keep("mia", run_mia(seeds, refs))

    @functools.cached_property
    def inversion(self) -> Json:
        return self._keep("inversion", run_inversion(3 if self.quick else 10))

    @functools.cached_property
    def pii(self) -> Json:
        return self._keep("pii", run_pii())

    @functools.cached_property
    def dp_fedavg(self) -> list[Json]:
        return self._keep("dp_fedavg_digits_20_providers", run_dp_fedavg(10 if self.quick else 40))

    @functools.cached_property
    def groupwise(self) -> list[Json]:
        return self._keep("groupwise", run_groupwise())

    @functools.cached_property
    def jobs(self) -> Json:
        return self._keep("dp_jobs", run_dp_jobs(1 if self.quick else 3))


# --------------------------------------------------------------------------- headlines


@headline(
    "noise_strip_residual_ratio",
    ">= 0.99 (residual DP noise / the noise an update carries, after the validator's best strip)",
)
def noise_strip_residual_ratio(lab: Lab) -> float:
    return float(min(r["strip_ratio"] for r in lab.jobs["plain"]))


@headline(
    "plaintext_updates_in_secure_jobs", "0 (sent or accepted, incl. providers without SecAgg)"
)
def plaintext_updates_in_secure_jobs(lab: Lab) -> int:
    return int(sum(r["plaintext_sent"] + r["plaintext_accepted"] for r in lab.jobs["secure"]))


@headline("epsilon_reported_vs_recomputed_max_gap", "0 (per provider, Opacus from participation)")
def epsilon_reported_vs_recomputed_max_gap(lab: Lab) -> float:
    rows = lab.jobs["plain"] + lab.jobs["secure"]
    return float(max(r["epsilon_gap"] for r in rows))


@headline("mitm_inputs_recovered", "0")
def mitm_inputs_recovered(lab: Lab) -> int:
    return int(lab.mitm["signed"]["inputs_recovered"])


@headline("secagg_expansion_n100", "<= 1.5 (bytes sent + received / plain 16-bit update)")
def secagg_expansion_n100(lab: Lab) -> float:
    rows = [
        r for r in lab.secagg if r["n"] == 100 and r["variant"] == "secagg" and "aborted" not in r
    ]
    return max(float(r["expansion_sent_received"]) for r in rows)


def _mia(attack: str, setting: str, metric: str) -> Callable[[Lab], Any]:
    def value(lab: Lab) -> Any:
        return lab.mia["summary"][setting][attack][metric]

    return value


# membership inference: (attack, setting) x (AUC, TPR at 1 % FPR), means and eps = 4 intervals
headline("mia_lira_auc_nonprivate_mean", ">= 0.6 (the attack is shown to work)")(
    _mia("lira", "nonprivate", "auc_mean")
)
headline("mia_lira_auc_eps4_mean")(_mia("lira", "eps4", "auc_mean"))
headline("mia_lira_auc_eps4_ci95", "upper <= 0.55")(_mia("lira", "eps4", "auc_ci95"))
headline("mia_lira_tpr_at_1pct_fpr_nonprivate_mean")(
    _mia("lira", "nonprivate", "tpr_at_1pct_fpr_mean")
)
headline("mia_lira_tpr_at_1pct_fpr_eps4_mean")(_mia("lira", "eps4", "tpr_at_1pct_fpr_mean"))
headline("mia_lira_tpr_at_1pct_fpr_eps4_ci95")(_mia("lira", "eps4", "tpr_at_1pct_fpr_ci95"))
headline("mia_loss_auc_nonprivate_mean")(_mia("loss", "nonprivate", "auc_mean"))
headline("mia_loss_auc_eps4_mean")(_mia("loss", "eps4", "auc_mean"))
headline("mia_loss_auc_eps4_ci95", "upper <= 0.55")(_mia("loss", "eps4", "auc_ci95"))
headline("mia_loss_tpr_at_1pct_fpr_nonprivate_mean")(
    _mia("loss", "nonprivate", "tpr_at_1pct_fpr_mean")
)
headline("mia_loss_tpr_at_1pct_fpr_eps4_mean")(_mia("loss", "eps4", "tpr_at_1pct_fpr_mean"))
headline("mia_loss_tpr_at_1pct_fpr_eps4_ci95")(_mia("loss", "eps4", "tpr_at_1pct_fpr_ci95"))


@headline("pii_recall", ">= 0.95 on every kind covered (value: the lowest kind)")
def pii_recall(lab: Lab) -> float:
    return min(float(v["recall"]) for v in lab.pii["pii_corpus"]["find_pii"]["per_kind"].values())


@headline("pii_precision", ">= 0.95 on every kind covered (value: the lowest kind)")
def pii_precision(lab: Lab) -> float:
    return min(
        float(v["precision"]) for v in lab.pii["pii_corpus"]["find_pii"]["per_kind"].values()
    )


@headline("gradient_inversion_recovered_fraction")
def gradient_inversion(lab: Lab) -> Json:
    """Per defence and attack: mean fraction of inputs recovered at MSE < 0.01."""
    return {
        row["defence"]: {a: row[a]["recovered_fraction_mean"] for a in ("dlg", "analytic")}
        for row in lab.inversion["rows"]
    }


# --------------------------------------------------------------------------- secagg cost


def run_secagg(dim: int) -> list[Json]:
    from deai.privacy.secagg import (
        DropoutPlan,
        SecAggAborted,
        SecAggConfig,
        Stage,
        run_secagg_inprocess,
    )

    rows: list[Json] = []
    for n, degree in [(10, None), (50, None), (100, None), (100, 40)]:
        t = n // 2 + 1 if degree is None else degree // 2 + 1
        cfg = SecAggConfig(
            n_clients=n, threshold=t, dim=dim, clip=1.0, value_bits=16, degree=degree
        )
        x = torch.rand(n, dim, generator=torch.Generator().manual_seed(n)) * 2 - 1
        for rate in (0.0, 0.1, 0.3):
            if degree is not None and rate == 0.3:
                continue
            plan = DropoutPlan.random(n, rate, Stage.MASKED_INPUT, seed=n)
            row: Json = {
                "n": n,
                "dim": dim,
                "dropout_rate": rate,
                "threshold": t,
                "max_colluders": cfg.max_colluders(),
                "variant": "secagg" if degree is None else f"secagg+ (k={degree})",
                "modulus_bits": cfg.bits,
            }
            t0 = time.perf_counter()
            try:
                run = run_secagg_inprocess(cfg, x, plan, seed=1)
            except SecAggAborted as e:
                row["aborted"] = str(e)
                rows.append(row)
                continue
            surv = list(run.output.survivors)
            sent = [run.bytes_sent[u] for u in surv]
            both = [run.bytes_sent[u] + run.bytes_received[u] for u in surv]
            err = float((run.output.vector - x[surv].sum(0)).abs().max())
            row.update(
                survivors=len(surv),
                bytes_sent_mean=float(np.mean(sent)),
                bytes_received_mean=float(np.mean([run.bytes_received[u] for u in surv])),
                expansion_sent=float(np.mean(sent)) / (2 * dim),
                expansion_sent_received=float(np.mean(both)) / (2 * dim),
                expansion_sent_received_max=float(max(both)) / (2 * dim),
                client_seconds_mean=float(np.mean([run.client_seconds[u] for u in surv])),
                server_seconds=run.server_seconds,
                wall_seconds=time.perf_counter() - t0,
                max_abs_error_of_sum=err,
                error_bound=len(surv) * cfg.fixed_point.step / 2,
            )
            log("secagg", {k: v for k, v in row.items() if k != "dim"})
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- man in the middle


def run_mitm(n_providers: int) -> Json:
    """The key-swapping coordinator against the real roles, then against non-checking
    clients (the pure state machines with a verifier that accepts anything)."""
    signed = _mitm_roles(n_providers)
    control = _mitm_unsigned(n_providers)
    out = {"providers": n_providers, "signed": signed, "unsigned_control": control}
    log("mitm", out)
    return out


def _mitm_roles(n: int) -> Json:
    """One secure round of a 20-provider job through the real roles, the coordinator's
    relay running the key-swap attack."""
    from dataclasses import replace

    from deai.node.job import JobSpec, PrivacySpec

    from deai.learning.algorithms import AlgorithmName, AlgorithmSpec, Weighting
    from deai.learning.data import DatasetName, load_dataset
    from deai.learning.models import ModelConfig
    from deai.learning.train import LocalTrainConfig
    from deai.node.messages import Message
    from deai.node.roles import Provider, Requester, Validator, model_for
    from deai.node.secagg import (
        SecAggClientRole,
        SecAggMessage,
        SecAggRoleConfig,
        SecAggServerRole,
        WithSecrets,
        install,
        payload_kind,
        round_config,
    )
    from deai.privacy.secagg.crypto import make_randbytes
    from deai.privacy.secagg.messages import (
        AdvertiseKeys,
        KeyRoster,
        Kind,
        MaskedInput,
        ShareBundle,
        ShareKeys,
    )
    from deai.privacy.secagg.mitm import KeySwapMITM
    from deai.privacy.secrets import SimulatedSecrets
    from deai.sim.engine import Simulation
    from deai.sim.network import LinkProfile, NetworkModel

    splits = load_dataset(DatasetName.DIGITS, seed=0)
    providers = tuple(f"provider-{i:03d}" for i in range(n))
    spec = JobSpec(
        job_id="mitm",
        rounds=1,
        seed=1,
        algorithm=AlgorithmSpec(
            name=AlgorithmName.FEDAVG,
            local=LocalTrainConfig(steps=2, batch_size=16, lr=0.2),
            weighting=Weighting.UNIFORM,
        ),
        model=ModelConfig(hidden=()),
        input_shape=splits.train.input_shape,
        num_classes=splits.train.num_classes,
        requester="req",
        providers=providers,
        validators=("v0",),
        round_timeout_s=60.0,
        privacy=PrivacySpec(
            clip=1.0, noise_multiplier=0.7, secure_aggregation=True, min_survivors=(3 * n) // 5
        ),
    )
    cfg = round_config(spec, spec.spec_hash(), 1, model_for(spec).dim, SecAggRoleConfig())
    attack = KeySwapMITM(cfg, make_randbytes(b"attacker"))
    truth: dict[str, torch.Tensor] = {}

    class Tap:
        def __init__(self, inner: SecAggClientRole) -> None:
            self.inner = inner

        def submit(self, job_id: str, round_: int, delta: torch.Tensor, k: int) -> None:
            truth[self.inner.node_id] = delta.clone()
            self.inner.submit(job_id, round_, delta, k)

    class Relay:
        def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
            if isinstance(msg, SecAggMessage):
                kind, raw = payload_kind(msg.payload), msg.payload
                if kind is Kind.ADVERTISE_KEYS:
                    attack.on_advertise(AdvertiseKeys.from_bytes(raw))
                elif kind is Kind.KEY_ROSTER:
                    raw = attack.on_roster(KeyRoster.from_bytes(raw)).to_bytes()
                elif kind is Kind.SHARE_KEYS:
                    raw = attack.on_shares(ShareKeys.from_bytes(raw)).to_bytes()
                elif kind is Kind.SHARE_BUNDLE:
                    attack.on_bundle(ShareBundle.from_bytes(raw))
                elif kind is Kind.MASKED_INPUT:
                    attack.on_masked(MaskedInput.from_bytes(raw))
                msg = replace(msg, payload=raw)
            sim.transmit(src, dst, msg)
            return True

    link = LinkProfile(1e8, 1e8, 0.01, 1000.0)
    sim = Simulation(NetworkModel({k: link for k in ("req", "v0", *providers)}), None, Relay())
    requester = Requester("req", spec)
    sim.add_node("req", requester)
    validator = Validator("v0", splits.validation)
    server_roles = install(None, validator)
    sim.add_node("v0", validator, *server_roles)
    clients: list[SecAggClientRole] = []
    parts = np.array_split(np.arange(len(splits.train)), n)
    for p, idx in zip(providers, parts, strict=True):
        provider = Provider(p, splits.train.subset(idx))
        roles = install(provider, None)
        client = roles[0]
        assert isinstance(client, SecAggClientRole)
        provider.uploader = Tap(client)
        sim.add_node(p, provider, *roles)
        clients.append(client)
    secrets = SimulatedSecrets(b"benchmark master seed (runtime only)")
    for roles in sim.nodes.values():
        for role in roles:
            role.attach(WithSecrets(role.ctx, secrets))
    sim.run(stop=lambda: requester.result is not None)
    got = attack.recover()
    drawn = list(providers)
    step = cfg.fixed_point.step
    exact = sum(1 for u, xu in got.items() if float((xu - truth[drawn[u]]).abs().max()) <= step)
    server = next(r for r in server_roles if isinstance(r, SecAggServerRole))
    return {
        "inputs_recovered": exact,
        "shares_read_in_transit": attack.shares_read,
        "clients_refused": sum(1 for c in clients if c.refusals),
        "refusal_example": clients[0].refusals[0].reason if clients[0].refusals else "",
        "aborts": [a.reason for a in server.aborts],
        "plaintext_update_bytes": sim.bytes.by_kind["update"],
    }


def _mitm_unsigned(n: int) -> Json:
    """The same attack on the pure state machines with clients that accept any roster
    signature (what unsigned rosters amount to): the attack's own control."""
    from deai.errors import PrivacyError
    from deai.privacy.secagg import (
        Identities,
        KeySwapMITM,
        SecAggClient,
        SecAggConfig,
        SecAggServer,
    )
    from deai.privacy.secagg.crypto import make_randbytes

    cfg = SecAggConfig(n_clients=n, threshold=n // 2 + 2, dim=650, clip=2.0)
    ids = Identities(n, 0)
    x = torch.rand(n, cfg.dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
    clients = [
        SecAggClient(u, cfg, x[u], make_randbytes(f"c{u}".encode()), ids.signer(u), lambda *a: True)
        for u in range(n)
    ]
    server = SecAggServer(cfg, ids.verify)
    attack = KeySwapMITM(cfg, make_randbytes(b"attacker"))
    for c in clients:
        adv = c.advertise_keys()
        attack.on_advertise(adv)
        server.receive_advertise(adv)
    try:
        for u, roster in server.close_advertise().items():
            server.receive_shares(attack.on_shares(clients[u].share_keys(attack.on_roster(roster))))
        for u, bundle in server.close_shares().items():
            attack.on_bundle(bundle)
            attack.on_masked(clients[u].masked_input(bundle))
    except PrivacyError as e:
        return {"inputs_recovered": 0, "error": str(e)}
    got = attack.recover()
    exact = sum(
        1 for u, xu in got.items() if float((xu - x[u]).abs().max()) <= cfg.fixed_point.step
    )
    return {"inputs_recovered": exact, "of": n}


# --------------------------------------------------------------------------- membership inference


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


def _mlp(seed: int, hidden: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _train_adam_many(
    seeds: list[int], xs: torch.Tensor, ys: torch.Tensor, steps: int
) -> list[nn.Module]:
    """Train one MLP per seed on its own ``xs[m], ys[m]`` (full batch, Adam lr 0.01): the
    models are stacked and trained together with ``torch.func`` (each loss depends only on
    its own model, so this equals training each alone)."""
    from torch.func import functional_call, stack_module_state

    models = [_mlp(s) for s in seeds]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    base = copy.deepcopy(models[0]).to("meta")

    def logits(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))  # type: ignore[no-any-return]

    batched = torch.vmap(logits)
    opt = torch.optim.Adam(list(params.values()), lr=0.01)
    m, n = ys.shape
    for _ in range(steps):
        opt.zero_grad()
        z = batched(params, buffers, xs)  # [m, n, 10]
        loss = nn.functional.cross_entropy(z.reshape(m * n, -1), ys.reshape(-1), reduction="none")
        loss.reshape(m, n).mean(1).sum().backward()
        opt.step()
    out = []
    for i, model in enumerate(models):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name][i])
        out.append(model)
    return out


def _train_dp(seed: int, x: torch.Tensor, y: torch.Tensor, z: float) -> nn.Module:
    from deai.privacy.dp_sgd import DPSGDConfig, train_dp_sgd

    cfg = DPSGDConfig(noise_multiplier=z, max_grad_norm=1.0, batch_size=20, epochs=30, lr=0.5)
    res = train_dp_sgd(_mlp(seed), x, y, cfg, seed=seed)
    model = _mlp(seed)
    torch.nn.utils.vector_to_parameters(res.parameters, model.parameters())
    return model


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run_mia(n_seeds: int, n_refs: int, per_class: int = 20, eps: float = 4.0) -> Json:
    from deai.privacy.accounting import PrivacyAccountant, PrivacyBudget, calibrate_noise
    from deai.privacy.measure import per_example_loss
    from deai.privacy.mia import (
        balanced_sample,
        balanced_split,
        lira_offline_scores,
        logit_confidence,
        mean_ci95,
        score_attack,
    )

    x, y = _digits()
    yn = y.numpy().astype(np.int64)
    n_train = 10 * per_class
    delta = 1e-5
    z = calibrate_noise(PrivacyBudget(eps, delta), 20 / n_train, 30 * n_train // 20)
    acct = PrivacyAccountant()
    acct.step(z, 20 / n_train, 30 * n_train // 20)
    runs: list[Json] = []
    for seed in range(n_seeds):
        rng = np.random.default_rng(1000 + seed)
        mem, non, rest = balanced_split(yn, per_class, rng)
        audit = np.r_[mem, non]
        ref_sets = [balanced_sample(yn, rest, per_class, rng) for _ in range(n_refs)]
        row: Json = {"seed": seed}
        for setting in ("nonprivate", "eps4"):
            t0 = time.perf_counter()
            seeds = [10_000 * seed + i for i in range(n_refs + 1)]
            sets = [mem, *ref_sets]
            if setting == "nonprivate":
                xs = torch.stack([x[s] for s in sets])
                ys = torch.stack([y[s] for s in sets])
                models = _train_adam_many(seeds, xs, ys, 400)
            else:
                models = [_train_dp(sd, x[s], y[s], z) for sd, s in zip(seeds, sets, strict=True)]
            target, refs = models[0], models[1:]
            phi_t = logit_confidence(target, x[audit], y[audit])
            phi_r = torch.stack([logit_confidence(m, x[audit], y[audit]) for m in refs])
            lira = lira_offline_scores(phi_t, phi_r)
            loss = -per_example_loss(target, x[audit], y[audit])
            k = len(mem)
            res_lira = score_attack(lira[:k], lira[k:])
            res_loss = score_attack(loss[:k], loss[k:])
            row[setting] = {
                "lira_auc": res_lira.auc,
                "lira_tpr_at_1pct_fpr": res_lira.tpr_at_1pct_fpr,
                "loss_auc": res_loss.auc,
                "loss_tpr_at_1pct_fpr": res_loss.tpr_at_1pct_fpr,
                "train_accuracy": _accuracy(target, x[mem], y[mem]),
                "test_accuracy": _accuracy(target, x[rest], y[rest]),
                "seconds": time.perf_counter() - t0,
            }
            log("mia seed", seed, setting, {k2: round(v, 3) for k2, v in row[setting].items()})
        runs.append(row)
    summary: Json = {}
    for setting in ("nonprivate", "eps4"):
        summary[setting] = {}
        for attack in ("lira", "loss"):
            entry: Json = {}
            for metric in ("auc", "tpr_at_1pct_fpr"):
                m, lo, hi = mean_ci95([r[setting][f"{attack}_{metric}"] for r in runs])
                entry[f"{metric}_mean"] = m
                entry[f"{metric}_ci95"] = [lo, hi]
            summary[setting][attack] = entry
        for acc in ("train_accuracy", "test_accuracy"):
            summary[setting][f"{acc}_mean"] = float(np.mean([r[setting][acc] for r in runs]))
    return {
        "dataset": "digits",
        "model": "MLP 64-64-10 (ReLU)",
        "members": len(mem),
        "nonmembers": len(non),
        "per_class": per_class,
        "reference_models": n_refs,
        "seeds": n_seeds,
        "nonprivate_recipe": "Adam lr 0.01, 400 full-batch steps",
        "dp_recipe": {
            "noise_multiplier": z,
            "max_grad_norm": 1.0,
            "sample_rate": 20 / n_train,
            "steps": 30 * n_train // 20,
            "lr": 0.5,
            "epsilon": acct.epsilon(delta),
            "delta": delta,
        },
        "summary": summary,
        "runs": runs,
    }


# --------------------------------------------------------------------------- gradient inversion


def run_inversion(n_seeds: int, threshold: float = 0.01) -> Json:
    from deai.privacy.inversion import (
        DLGConfig,
        analytic_first_layer,
        batch_dlg,
        per_example_clipped_sum,
        recovered,
    )
    from deai.privacy.mia import mean_ci95

    x, y = _digits()
    clip = 1.0
    # (name, examples in the observed update, per-example clip, noise std on the update)
    defences: list[tuple[str, int, float | None, float]] = [
        ("none", 1, None, 0.0),
        ("clip 1", 1, clip, 0.0),
        ("DP share z=0.157 (one of 20 providers' noise, demo)", 1, clip, 0.7 / math.sqrt(20)),
        ("DP z=1 (local)", 1, clip, 1.0),
        ("secure sum of 10", 10, clip, 0.0),
        ("secure sum of 100", 100, clip, 0.0),
    ]
    rows: list[Json] = []
    for name, batch, c, z in defences:
        per_attack: dict[str, list[float]] = {"dlg": [], "analytic": []}
        mse_best: dict[str, list[float]] = {"dlg": [], "analytic": []}
        t0 = time.perf_counter()
        for seed in range(n_seeds):
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(len(y), generator=gen)[:batch]
            xb, yb = x[idx], y[idx]
            model = _mlp(seed, hidden=256)
            g = per_example_clipped_sum(model, xb, yb, c)
            if z > 0:
                g = g + torch.randn(g.shape, generator=gen) * z * (c or 1.0)
            w, b = g[: 64 * 256].reshape(256, 64), g[64 * 256 : 64 * 256 + 256]
            cands = analytic_first_layer(w, b, candidates=256)
            k_a, best_a = recovered(xb, cands, threshold)
            rec = batch_dlg(model, g, yb, (64,), DLGConfig(iterations=40, restarts=2, seed=seed))
            k_d, best_d = recovered(xb, rec, threshold)
            per_attack["analytic"].append(k_a / batch)
            per_attack["dlg"].append(k_d / batch)
            mse_best["analytic"].append(float(best_a.median()))
            mse_best["dlg"].append(float(best_d.median()))
        row: Json = {"defence": name, "examples": batch, "clip": c, "noise_std": z}
        for attack, fr in per_attack.items():
            m, lo, hi = mean_ci95(fr)
            row[attack] = {
                "recovered_fraction_mean": m,
                "recovered_fraction_ci95": [max(0.0, lo), min(1.0, hi)],
                "median_best_mse_mean": float(np.mean(mse_best[attack])),
                "per_seed": fr,
            }
        row["seconds"] = time.perf_counter() - t0
        log("inversion", name, {a: round(row[a]["recovered_fraction_mean"], 3) for a in per_attack})
        rows.append(row)
    mean_guess = float(((x - x.mean(0)) ** 2).mean())
    return {
        "model": "MLP 64-256-10 (ReLU), fresh init per seed",
        "threshold_mse": threshold,
        "seeds": n_seeds,
        "mse_of_guessing_the_dataset_mean": mean_guess,
        "rows": rows,
    }


# --------------------------------------------------------------------------- PII


def run_pii() -> Json:
    """``find_pii`` (what ``scrub_text`` replaces) and the old regexes, on the development
    corpus and on the held-out one (written after the detector was frozen)."""
    from deai.privacy.pii_eval import evaluate_corpus, load_corpus
    from deai.privacy.text import find_pii, find_pii_regex

    out: Json = {}
    for name in ("pii_corpus", "pii_corpus_heldout"):
        corpus = load_corpus(ROOT / "tests" / "privacy" / "data" / f"{name}.jsonl")
        out[name] = {
            "lines": len(corpus),
            "spans": sum(len(c.spans) for c in corpus),
            "find_pii": evaluate_corpus(corpus, find_pii).as_json(),
            "regex_baseline": evaluate_corpus(corpus, find_pii_regex).as_json(),
        }
        log(
            "pii",
            name,
            {
                k: (round(v["recall"], 3), round(v["precision"], 3))
                for k, v in out[name]["find_pii"]["per_kind"].items()
            },
        )
    return out


# --------------------------------------------------------------------------- DP-FedAvg, group-wise


def run_dp_fedavg(rounds: int) -> list[Json]:
    from deai.errors import BudgetExhausted
    from deai.privacy.accounting import AccountantKind, PrivacyAccountant, PrivacyBudget
    from deai.privacy.dp_fedavg import DPFedAvgConfig, finalize_sum, privatize_client_update

    x, y = _digits()
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    shards = np.array_split(np.arange(1400), 20)
    q, clip, delta = 0.5, 1.0, 1e-3
    out: list[Json] = []
    for z in (0.0, 0.5, 1.0, 2.0):
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        rng = np.random.default_rng(0)
        gen = torch.Generator().manual_seed(1)
        acc = PrivacyAccountant(AccountantKind.RDP)
        budget = PrivacyBudget(50.0, delta)
        cfg = DPFedAvgConfig(clip=clip, noise_multiplier=z, expected_clients=q * 20)
        eps_trace: list[float] = []
        stopped = ""
        for _ in range(rounds):
            if z > 0:
                try:
                    eps_trace.append(acc.charge(budget, z, q, 1))
                except BudgetExhausted as e:
                    stopped = str(e)
                    break
            g = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
            total = torch.zeros_like(g)
            for shard in shards:
                if rng.random() >= q:
                    continue
                local = nn.Linear(64, 10)
                torch.nn.utils.vector_to_parameters(g.clone(), local.parameters())
                opt = torch.optim.SGD(local.parameters(), lr=0.5)
                for _ in range(5):
                    opt.zero_grad()
                    nn.functional.cross_entropy(local(xtr[shard]), ytr[shard]).backward()
                    opt.step()
                delta_w = torch.nn.utils.parameters_to_vector(local.parameters()).detach() - g
                total += privatize_client_update(delta_w, cfg, gen).vector
            torch.nn.utils.vector_to_parameters(
                g + finalize_sum(total, cfg, gen), model.parameters()
            )
        row: Json = {
            "noise_multiplier": z,
            "rounds_run": len(eps_trace) if z > 0 else rounds,
            "sample_rate": q,
            "clip": clip,
            "delta": delta,
            "epsilon_per_round": [round(e, 3) for e in eps_trace],
            "final_epsilon": eps_trace[-1] if eps_trace else (math.inf if z == 0 else 0.0),
            "test_accuracy": _accuracy(model, xte, yte),
        }
        if stopped:
            row["stopped"] = stopped
        log("dp_fedavg", {k: v for k, v in row.items() if k != "epsilon_per_round"})
        out.append(row)
    return out


def run_groupwise() -> list[Json]:
    from deai.aggregation.base import Aggregate, RoundContext
    from deai.privacy.groupwise import GroupwiseConfig, groupwise_aggregate

    def median(u: torch.Tensor, w: torch.Tensor, ctx: RoundContext | None = None) -> Aggregate:
        return Aggregate(u.median(dim=0).values)

    n, d = 30, 32
    gen = torch.Generator().manual_seed(0)
    honest = 0.1 + 0.05 * torch.randn(n, d, generator=gen)
    rows: list[Json] = []
    for f in (3, 6):
        updates = honest.clone()
        updates[:f] = 0.9  # attackers push every coordinate to the clip bound
        truth = honest[f:].mean(0)
        for s in (1, 2, 3, 5, 10):
            res = groupwise_aggregate(updates, median, GroupwiseConfig(group_size=s, seed=3))
            rows.append(
                {
                    "attackers": f,
                    "group_size": s,
                    "groups": len(res.groups),
                    "spoiled_groups": sum(1 for g in res.groups if any(i < f for i in g)),
                    "error_l2": float((res.aggregate.vector - truth).norm()),
                    "anonymity_set": s,
                }
            )
    return rows


# --------------------------------------------------------------------------- docs


def _ci(entry: Json, metric: str) -> str:
    lo, hi = entry[f"{metric}_ci95"]
    return f"{entry[f'{metric}_mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(result: Json) -> None:
    """Rewrite the generated tables of docs/privacy.md from the JSON."""
    from docs_table import write_block

    d = result.get("details", {})
    if "secagg" in d:
        rows = [
            [
                r["variant"],
                str(r["n"]),
                f"{r['dropout_rate']:.0%}",
                str(r["threshold"]),
                str(r["max_colluders"]),
                str(r["modulus_bits"]),
                f"{r['bytes_sent_mean'] / 1e6:.3f}",
                f"{r['bytes_received_mean'] / 1e3:.1f}",
                f"{r['expansion_sent']:.3f}",
                f"**{r['expansion_sent_received']:.3f}**",
                f"{r['client_seconds_mean']:.2f}",
                f"{r['server_seconds']:.1f}",
                f"{r['max_abs_error_of_sum']:.1e} ({r['error_bound']:.1e})",
            ]
            for r in d["secagg"]
            if "aborted" not in r
        ]
        header = [
            "variant",
            "n",
            "drop-out",
            "t",
            "colluders tolerated",
            "k bits",
            "sent MB",
            "received kB",
            "expansion (sent)",
            "expansion (sent + received)",
            "client s",
            "server s",
            "sum error (bound)",
        ]
        write_block(DOC, "privacy-secagg", _table(header, rows))
    if "mitm" in d:
        m = d["mitm"]
        rows = [
            [
                "signed rosters (ours), real roles",
                str(m["providers"]),
                str(m["signed"]["inputs_recovered"]),
                str(m["signed"]["shares_read_in_transit"]),
                f"{m['signed']['clients_refused']} of {m['providers']} refused; round aborted",
            ],
            [
                "unsigned rosters (control)",
                str(m["providers"]),
                str(m["unsigned_control"]["inputs_recovered"]),
                "all",
                "none noticed",
            ],
        ]
        header = ["clients", "providers", "inputs recovered", "shares read in transit", "outcome"]
        write_block(DOC, "privacy-mitm", _table(header, rows))
    if "mia" in d:
        mia = d["mia"]
        rows = []
        for attack, label in (
            ("lira", "offline LiRA (16 reference models)"),
            ("loss", "loss threshold"),
        ):
            for setting, name in (("nonprivate", "non-private"), ("eps4", "DP-SGD eps = 4")):
                e = mia["summary"][setting][attack]
                rows.append(
                    [
                        label,
                        name,
                        _ci(e, "auc"),
                        _ci(e, "tpr_at_1pct_fpr"),
                        f"{mia['summary'][setting]['train_accuracy_mean']:.3f}",
                        f"{mia['summary'][setting]['test_accuracy_mean']:.3f}",
                    ]
                )
        header = [
            "attack",
            "target",
            "AUC mean [95% CI]",
            "TPR at 1% FPR [95% CI]",
            "train acc",
            "test acc",
        ]
        write_block(DOC, "privacy-mia", _table(header, rows))
    if "inversion" in d:
        inv = d["inversion"]
        rows = []
        for r in inv["rows"]:
            cells = [r["defence"], str(r["examples"])]
            for a in ("dlg", "analytic"):
                lo, hi = r[a]["recovered_fraction_ci95"]
                cells.append(f"{r[a]['recovered_fraction_mean']:.2f} [{lo:.2f}, {hi:.2f}]")
                cells.append(f"{r[a]['median_best_mse_mean']:.3g}")
            rows.append(cells)
        header = [
            "what the aggregator sees",
            "inputs",
            "batch DLG: recovered [95% CI]",
            "DLG median best MSE",
            "analytic: recovered [95% CI]",
            "analytic median best MSE",
        ]
        write_block(DOC, "privacy-inversion", _table(header, rows))
    if "pii" in d:
        p = d["pii"]
        rows = []
        for kind in p["pii_corpus"]["find_pii"]["per_kind"]:
            cells = [kind]
            for corpus in ("pii_corpus", "pii_corpus_heldout"):
                ours = p[corpus]["find_pii"]["per_kind"][kind]
                old = p[corpus]["regex_baseline"]["per_kind"][kind]
                cells += [
                    str(ours["labelled"]),
                    f"{ours['recall']:.3f} ({old['recall']:.3f})",
                    f"{ours['precision']:.3f} ({old['precision']:.3f})",
                ]
            rows.append(cells)
        tot = ["all"]
        for corpus in ("pii_corpus", "pii_corpus_heldout"):
            ours, old = p[corpus]["find_pii"], p[corpus]["regex_baseline"]
            tot += [
                str(p[corpus]["spans"]),
                f"{ours['recall']:.3f} ({old['recall']:.3f})",
                f"{ours['precision']:.3f} ({old['precision']:.3f})",
            ]
        rows.append(tot)
        header = [
            "kind",
            "spans",
            "recall (regex)",
            "precision (regex)",
            "held-out spans",
            "held-out recall (regex)",
            "held-out precision (regex)",
        ]
        write_block(DOC, "privacy-pii", _table(header, rows))


def _recomputed_gap(run: Any) -> float:
    """Largest |reported - recomputed| epsilon over providers, recomputed with Opacus from
    the rounds each provider's update was in."""
    from opacus.accountants import RDPAccountant

    spec = run.spec
    reported = run.metrics["privacy"]["per_provider"]
    gap = 0.0
    for p in spec.providers:
        acc = RDPAccountant()
        for o in run.outcomes:
            if o.applied and p in o.accepted and o.privacy is not None:
                acc.step(noise_multiplier=o.privacy.noise_multiplier, sample_rate=1.0)
        mine = acc.get_epsilon(spec.privacy.delta) if acc.history else 0.0
        theirs = reported.get(p, {}).get("epsilon_public", 0.0)
        gap = max(gap, abs(mine - theirs))
    return gap


def _strip(pl: Any, run: Any) -> float:
    """Play the validator: strip each update's DP noise with every seed derivable from the
    spec; the omniscient benchmark knows the true noise (update minus the provider's
    clipped, deterministically re-trained delta). 1.0: nothing stripped."""
    from deai.job.spec import derive_seed
    from deai.learning.train import TrainRequest, train_local
    from deai.node.base import codec_seed, model_for, participants, train_seed
    from deai.privacy.dp_fedavg import clip_update, gaussian_noise

    spec, model = run.spec, model_for(run.spec)
    p = spec.privacy
    ratios = []
    for o in run.outcomes:
        if o.updates is None or o.start_params is None:
            continue
        std = p.noise_multiplier * p.clip / math.sqrt(len(participants(spec, o.round)))
        for row, prov in zip(o.updates, o.accepted, strict=True):
            data = pl.splits.train.subset(pl.parts[spec.providers.index(prov)])
            req = TrainRequest(
                o.start_params, data.x, data.y, spec.algorithm.local(),
                train_seed(spec, prov, o.round),
            )  # fmt: skip
            delta = train_local(model, [req])[0].params - o.start_params
            noise = row - clip_update(delta, p.clip).vector
            guesses = [torch.zeros_like(noise)]
            for seed in (
                derive_seed(spec.seed, spec.job_id, prov, o.round, "dp-noise"),  # the old one
                derive_seed(spec.seed, prov, o.round, "dp-noise"),
                train_seed(spec, prov, o.round),
                codec_seed(spec, prov),
                spec.seed,
            ):
                gen = torch.Generator().manual_seed(seed % 2**63)
                guesses.append(gaussian_noise(noise.shape[0], std, gen))
            best = min(float((noise - g).norm()) for g in guesses)
            ratios.append(best / float(noise.norm()))
    return min(ratios)


def run_dp_jobs(n_seeds: int) -> Json:
    """DP jobs through the real roles: without secure aggregation (noise stripping, epsilon
    recomputation) and with it (no plaintext update sent or accepted, even when a provider
    has no SecAgg client, and the recomputation again)."""
    from deai.sim.runner import execute, plan
    from deai.sim.scenario import parse_scenario

    def scenario(seed: int, secure: bool, strip: bool = False) -> Any:
        nodes: list[Json] = [{"role": "provider", "count": 20}, {"role": "validator"}]
        if strip:  # the finding: providers that run no SecAgg client must refuse, not leak
            nodes = [
                {"role": "provider", "count": 16},
                {"role": "provider", "count": 4, "behaviour": "no_secagg"},
                {"role": "validator"},
            ]
        return parse_scenario(
            {
                "name": f"dp-{'secure' if secure else 'plain'}-{seed}",
                "seed": seed,
                "rounds": 4,
                "algorithm": {"name": "fedavg", "steps": 3, "lr": 0.2, "participation": 0.5},
                "privacy": {
                    "clip": 1.0,
                    "noise_multiplier": 1.0,
                    "epsilon": 30.0,
                    "secure_aggregation": secure,
                },
                "simulation": {
                    "data": {"dataset": "digits", "partition": "iid"},
                    "nodes": nodes,
                },
            }
        )

    out: Json = {"plain": [], "secure": []}
    for seed in range(n_seeds):
        pl = plan(scenario(seed, False))
        run = execute(pl, keep_updates=True)  # the strip attack reads what the validator saw
        out["plain"].append(
            {"seed": seed, "strip_ratio": _strip(pl, run), "epsilon_gap": _recomputed_gap(run)}
        )
        log("dp job plain", seed, out["plain"][-1])
        for strip_clients in (False, True):
            run = execute(plan(scenario(seed, True, strip_clients)), keep_updates=True)
            sent = run.metrics["bytes_by_kind"].get("update", 0)
            accepted = sum(
                len(o.accepted) for o in run.outcomes if o.updates is not None and o.accepted
            )
            out["secure"].append(
                {
                    "seed": seed,
                    "clients_removed": strip_clients,
                    "plaintext_sent": int(sent > 0),
                    "plaintext_accepted": accepted,
                    "refusals": len(run.metrics["refusals"]),
                    "epsilon_gap": 0.0 if strip_clients else _recomputed_gap(run),
                }
            )
            log("dp job secure", seed, out["secure"][-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--only", nargs="*", default=None, help="headline keys to (re)compute")
    ap.add_argument("--also", nargs="*", default=(), help="extra experiments to record")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    old: Json = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.render_only:
        render(old)
        return
    unknown = set(args.only or ()) - HEADLINES.keys()
    if unknown:
        raise SystemExit(f"unknown keys {sorted(unknown)}; known: {sorted(HEADLINES)}")
    lab = Lab(args.quick)
    t0 = time.perf_counter()
    keys = list(HEADLINES) if args.only is None else args.only
    result: Json = {k: v for k, v in old.items() if k in HEADLINES}
    for k in keys:
        log("computing", k)
        result[k] = HEADLINES[k](lab)
    for name in args.also if args.only is not None else ("dp_fedavg", "groupwise"):
        getattr(lab, name)
    details = dict(old.get("details", {}))
    details.update(lab.details)
    result["goals"] = GOALS
    result["details"] = details
    meta = {k: v for k, v in old.get("meta", {}).items() if isinstance(v, dict)}
    meta[",".join(keys)] = {
        "quick": args.quick,
        "seconds": time.perf_counter() - t0,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": 1,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    result["meta"] = meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    log("wrote", args.out, {k: result[k] for k in keys if not isinstance(result[k], dict)})
    if args.out == OUT and not args.quick:
        render(result)


if __name__ == "__main__":
    main()
