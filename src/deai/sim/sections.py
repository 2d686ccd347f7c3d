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
            "-" if r.get("epsilon_aggregator") is None else f"{r['epsilon_aggregator']:.3g}",
        ]
        for r in m["rounds"]
    ]
    note = (
        f"User-level DP-FedAvg: clip {p['clip']}, noise multiplier {p['noise_multiplier']}, "
        f"delta {p['delta']}, budget epsilon {p['epsilon']} per provider; secure aggregation "
        f"{'on' if p['secure_aggregation'] else 'off'}. Worst provider's epsilon against the "
        f"public model: {p['epsilon_spent']:.3f}; against the aggregator: "
        f"{p['epsilon_aggregator']:.3g} ({p['epsilon_aggregator_note']}). Accounting: "
        f"{p['accounting']}."
    )
    if m.get("stopped"):
        note += f" {m['stopped']}."
    if m.get("secagg_aborts"):
        note += f" Secure aggregation aborted {len(m['secagg_aborts'])} round(s)."
    return {
        "title": "Privacy",
        "note": note,
        "columns": ["round", "accuracy", "epsilon (public)", "epsilon (aggregator)"],
        "rows": rows,
    }


def ledger_sections(m: dict[str, Any]) -> list[Section]:
    L = m.get("ledger")
    if not L or "rounds" not in L:
        return []
    errors = L.get("errors", [])
    settle = {
        "title": "Settlement on chain",
        "note": (
            f"{L['chain']}, job {L['job_id']}: deposit {_eth(L['deposit_wei'])} ETH = "
            f"claimed {_eth(L['claimed_wei'])} + refunded {_eth(L['refunded_wei'])} "
            f"+ unclaimed {_eth(L['payable_wei'] - L['claimed_wei'])}; stake slashed "
            f"{_eth(L['slashed_wei'])} ETH. Gas: {L['gas_total']:,} in all, "
            f"{L['gas_claims']:,} for the claims."
            + (f" Errors: {'; '.join(errors)}." if errors else "")
        ),
        "columns": ["round", "settled", "agreeing", "slashed", "paid out (ETH)"],
        "rows": [
            [
                r["round"],
                "yes" if r["settled"] else ("aborted" if r["settled"] is False else "-"),
                _agreeing(r.get("results", {})),
                ", ".join(r["slashed"]) or "-",
                _eth(r["total"]),
            ]
            for r in L["rounds"]
        ],
    }
    behaviours = m.get("provider_behaviours", {})
    payouts = {
        "title": "Payouts",
        "note": m.get("payout_rule_note", "")
        + _rules_applied(L.get("payout_rules_applied", {}))
        + " Payouts of settled rounds only (an aborted round pays nobody); claimed with "
        "Merkle proofs.",
        "columns": ["provider", "behaviour", "contribution", "owed (ETH)", "paid (ETH)"],
        "rows": [
            [
                p["node"],
                behaviours.get(p["node"], ""),
                f"{p['contribution']:.4f}",
                _eth(p.get("owed_wei", 0)),
                _eth(p["paid_wei"]),
            ]
            for p in L["providers"]
        ],
    }
    groups: dict[str, list[int]] = {}
    for p in L["providers"]:
        b = behaviours.get(p["node"], "")
        groups.setdefault(b, [0, 0])
        groups[b][0] += 1
        groups[b][1] += int(p["paid_wei"])
    total = sum(v[1] for v in groups.values()) or 1
    by_group = {
        "title": "Payout share by behaviour",
        "note": "The share of all paid wei each behaviour group received (attackers and "
        "faulty peers should get none: see the payout rules above).",
        "columns": ["behaviour", "providers", "paid (ETH)", "share"],
        "rows": [[b, n, _eth(w), f"{w / total:.3f}"] for b, (n, w) in sorted(groups.items())],
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
    return [settle, payouts, by_group, stakes]


def _agreeing(results: dict[str, str | None]) -> int:
    values = [v for v in results.values() if v]
    return max((values.count(v) for v in values), default=0)


def notes_section(m: dict[str, Any]) -> Section | None:
    rows = [["round", n] for n in m.get("notes", [])]
    rows += [["refusal", f"{r['node']}: {r['reason']}"] for r in m.get("refusals", [])]
    rows += [["settlement", e] for e in m.get("settlement_errors", [])]
    if m.get("stopped"):
        rows.append(["stopped", m["stopped"]])
    if not rows:
        return None
    return {
        "title": "Notes",
        "note": "Rounds that applied no update and why, jobs a node refused, settlement "
        "failures: nothing is dropped silently.",
        "columns": ["kind", "what happened"],
        "rows": rows,
    }


def sections_for(m: dict[str, Any]) -> list[Section]:
    out = [notes_section(m), attack_section(m), compression_section(m), privacy_section(m)]
    return [s for s in out if s is not None] + ledger_sections(m)


def _rules_applied(applied: dict[str, int]) -> str:
    """How often each payout rule applied over the job (provider-rounds), for the note."""
    if not applied:
        return " No payout rule zeroed or merged any update."
    parts = ", ".join(f"{rule}: {k}" for rule, k in sorted(applied.items()))
    return f" Rules applied (provider-rounds, at the reporting validator): {parts}."
