"""Write ``metrics.json`` and a self-contained ``report.html`` (inline SVG plots)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from deai.sim.runner import RunResult


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _accuracy_loss(rounds: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    r = [x["round"] for x in rounds]
    ax.plot(r, [x["accuracy"] for x in rounds], color="#1f77b4", marker=".", label="test accuracy")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy", color="#1f77b4")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(r, [x["loss"] for x in rounds], color="#d62728", marker=".", label="test loss")
    ax2.set_ylabel("loss", color="#d62728")
    ax.set_title("Accuracy and loss per round")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _bytes(rounds: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    r = np.array([x["round"] for x in rounds])
    ax.bar(r - 0.2, [x["bytes_up"] / 1e6 for x in rounds], width=0.4, label="up (providers)")
    ax.bar(r + 0.2, [x["bytes_down"] / 1e6 for x in rounds], width=0.4, label="down (providers)")
    ax.set_xlabel("round")
    ax.set_ylabel("MB")
    ax.set_title("Bytes per round")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return _svg(fig)


def _consensus(rounds: list[dict[str, Any]]) -> str | None:
    if not rounds or "consensus_distance" not in rounds[0]:
        return None
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    ax.semilogy([x["round"] for x in rounds], [x["consensus_distance"] for x in rounds], marker=".")
    ax.set_xlabel("round")
    ax.set_ylabel("consensus distance")
    ax.set_title("Distance of node models to their average")
    ax.grid(alpha=0.3)
    return _svg(fig)


def _histograms(hist: np.ndarray, ids: list[str]) -> str:
    n, k = hist.shape
    fig, ax = plt.subplots(figsize=(max(6.2, 0.28 * n + 2), 3.4))
    bottom = np.zeros(n)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    for c in range(k):
        ax.bar(range(n), hist[:, c], bottom=bottom, color=cmap(c % cmap.N), label=str(c))
        bottom += hist[:, c]
    step = max(1, math.ceil(n / 40))
    ax.set_xticks(
        range(0, n, step),
        [ids[i].removeprefix("provider-") for i in range(0, n, step)],
        rotation=90,
        fontsize=7,
    )
    ax.set_xlabel("provider")
    ax.set_ylabel("examples")
    ax.set_title("Label histogram of each provider's private data")
    ax.legend(title="class", fontsize=7, ncols=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _svg(fig)


def write_outputs(
    result: RunResult, out: Path, sections: list[dict[str, Any]] | None = None
) -> None:
    """``out/metrics.json`` and ``out/report.html``; ``sections`` are extra tables
    (title, columns, rows) that other planes contribute."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=float))
    m = result.metrics
    env = Environment(
        loader=PackageLoader("deai.sim", "templates"), autoescape=select_autoescape(["html"])
    )
    html = env.get_template("report.html").render(
        m=m,
        plots=[
            p
            for p in (_accuracy_loss(m["rounds"]), _bytes(m["rounds"]), _consensus(m["rounds"]))
            if p
        ],
        histogram=_histograms(result.histograms, result.provider_ids),
        sections=sections or [],
        rejections=result.rejections[:200],
    )
    (out / "report.html").write_text(html)
