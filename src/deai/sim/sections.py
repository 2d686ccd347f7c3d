"""Report sections derived from a run's metrics: attackers, privacy, compression, the
chain's settlement, payouts and stakes. Each is ``{"title", "note", "columns", "rows"}``."""

from __future__ import annotations

from typing import Any

Section = dict[str, Any]
ETH = 1e18


def _eth(wei: int) -> str:
    return f"{wei / ETH:.4f}"


def attack_section(m: dict[str, Any]) -> Section | None:
    if not m.get("attackers"):
        return None
    excluded: dict[str, int] = {}
    for r in m["rounds"]:
        for node in r.get("excluded", []):
            excluded[node] = excluded.get(node, 0) + 1
    rejected: dict[str, int] = {}
    for r in m["rejections"]:
        rejected[r["sender"]] = rejected.get(r["sender"], 0) + 1
    rows = [
        [node, m["provider_behaviours"][node], excluded.get(node, 0), rejected.get(node, 0)]
        for node in sorted(set(m["attackers"]) | set(excluded) | set(rejected))
    ]
    tpr = [r["true_positive_rate"] for r in m["rounds"] if r.get("true_positive_rate") is not None]
    fpr = [
        r["false_positive_rate"] for r in m["rounds"] if r.get("false_positive_rate") is not None
    ]
    note = (
        f"Aggregator '{m['aggregator']}'. Rounds each node's update was excluded by the "
        f"aggregator or rejected by validation. Mean true-positive rate "
        f"{sum(tpr) / max(len(tpr), 1):.2f}, false-positive rate "
        f"{sum(fpr) / max(len(fpr), 1):.2f} over {len(m['rounds'])} rounds."
    )
    if "backdoor_success" in m:
        note += f" Backdoor success on triggered test images: {m['backdoor_success']:.3f}."
    return {
        "title": "Attackers and faulty peers",
        "note": note,
        "columns": ["node", "behaviour", "rounds excluded", "rounds rejected"],
        "rows": rows,
    }


def compression_section(m: dict[str, Any]) -> Section | None:
    if m.get("codec", "identity") == "identity" or not m.get("rounds"):
        return None
    raw, sent = m.get("uncompressed_update_bytes", 0), m.get("update_bytes", 0)
    note = f"Codec '{m['codec']}' with error feedback."
    rows = [
        ["update messages sent", f"{sent:,}"],
        ["the same as float32", f"{raw:,}"],
        ["saved", f"{raw - sent:,} ({raw / max(sent, 1):.1f}x smaller)"],
    ]
    return {"title": "Compression", "note": note, "columns": ["", "bytes"], "rows": rows}


def privacy_section(m: dict[str, Any]) -> Section | None:
    p = m.get("privacy")
    if not p:
        return None
    rows = [
        [
            r["round"],
            f"{r['accuracy']:.4f}",
            "-" if r.get("epsilon") is None else f"{r['epsilon']:.3f}",
        ]
        for r in m["rounds"]
    ]
    note = (
        f"User-level DP-FedAvg: clip {p['clip']}, noise multiplier {p['noise_multiplier']}, "
        f"delta {p['delta']}, budget epsilon {p['epsilon']}; secure aggregation "
        f"{'on' if p['secure_aggregation'] else 'off'}. Epsilon spent: "
        f"{p['epsilon_spent']:.3f} (Opacus RDP accountant)."
    )
    if m.get("stopped"):
        note += f" {m['stopped']}."
    if m.get("secagg_aborts"):
        note += f" Secure aggregation aborted {len(m['secagg_aborts'])} round(s)."
    return {
        "title": "Privacy",
        "note": note,
        "columns": ["round", "accuracy", "epsilon"],
        "rows": rows,
    }


def ledger_sections(m: dict[str, Any]) -> list[Section]:
    L = m.get("ledger")
    if not L:
        return []
    settle = {
        "title": "Settlement on chain",
        "note": (
            f"{L['chain']}, job {L['job_id']}: deposit {_eth(L['deposit_wei'])} ETH = "
            f"claimed {_eth(L['claimed_wei'])} + refunded {_eth(L['refunded_wei'])} "
            f"+ unclaimed {_eth(L['payable_wei'] - L['claimed_wei'])}; stake slashed "
            f"{_eth(L['slashed_wei'])} ETH. Gas: {L['gas_total']:,} in all, "
            f"{L['gas_claims']:,} for the claims."
        ),
        "columns": ["round", "committee", "agreeing", "slashed", "paid out (ETH)", "gas"],
        "rows": [
            [
                r["round"],
                ", ".join(r["committee"]),
                max(list(r["results"].values()).count(h) for h in r["results"].values()),
                ", ".join(r["slashed"]) or "-",
                _eth(r["total"]),
                f"{r['gas']:,}",
            ]
            for r in L["rounds"]
        ],
    }
    behaviours = m.get("provider_behaviours", {})
    payouts = {
        "title": "Payouts by contribution",
        "note": "Contribution: leave-one-out (or the configured evaluator) on the requester's "
        "validation data, summed over rounds; payouts claimed with Merkle proofs.",
        "columns": ["provider", "behaviour", "contribution", "paid (ETH)"],
        "rows": [
            [
                p["node"],
                behaviours.get(p["node"], ""),
                f"{p['contribution']:.4f}",
                _eth(p["paid_wei"]),
            ]
            for p in L["providers"]
        ],
    }
    stakes = {
        "title": "Validator stakes",
        "note": "A validator whose revealed result disagrees with the majority is slashed by "
        "the contract, from on-chain evidence; no admin can slash.",
        "columns": ["validator", "lies", "stake before (ETH)", "stake after (ETH)"],
        "rows": [
            [
                v["node"],
                "yes" if v["liar"] else "no",
                _eth(v["stake_before_wei"]),
                _eth(v["stake_after_wei"]),
            ]
            for v in L["validators"]
        ],
    }
    return [settle, payouts, stakes]


def sections_for(m: dict[str, Any]) -> list[Section]:
    out = [attack_section(m), compression_section(m), privacy_section(m)]
    return [s for s in out if s is not None] + ledger_sections(m)
