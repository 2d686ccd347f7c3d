"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021, "FLTrust: Byzantine-robust federated learning
via trust bootstrapping").

The validator trains on a small clean root dataset of its own and passes that update as
``ctx.reference`` (``g0``). Each row gets trust ``TS_i = ReLU(cos(x_i, g0))``, is rescaled to
``||g0||``, and the result is ``sum_i TS_i x_i' / sum_i TS_i``. Threat model: the root data is
clean and roughly like the task's data; the number of attackers is not bounded, but an
attacker whose row points along ``g0`` keeps its (norm-capped) say. Cost ``O(n d)``. Rows with
zero trust (including zero rows) are ``excluded``; if all are, the result is zero. Ignores
``weights`` (trust replaces the claimed example counts).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.aggregation._common import as64, check_vector
from deai.aggregation.base import Aggregate, RoundContext, check_stack
from deai.errors import AggregationError


def trust_scores(updates: Tensor, reference: Tensor) -> Tensor:
    """``ReLU(cos(x_i, g0))`` as float64 ``[n]``; zero for a zero row or zero reference."""
    x = as64(updates)
    g0 = as64(reference)
    norms = torch.linalg.vector_norm(x, dim=1)  # [n]
    g0_norm = torch.linalg.vector_norm(g0)
    denom = norms * g0_norm
    cos = torch.where(denom > 0, (x @ g0) / denom.clamp(min=1e-300), torch.zeros_like(norms))
    return cos.clamp(min=0.0)


def fltrust(updates: Tensor, weights: Tensor, ctx: RoundContext | None = None) -> Aggregate:
    """FLTrust against ``ctx.reference``; ``scores["trust"]`` holds ``TS_i``."""
    check_stack(updates, weights)
    if ctx is None or ctx.reference is None:
        raise AggregationError("FLTrust needs ctx.reference, the validator's root-data update")
    check_vector(ctx.reference, updates.shape[1], "FLTrust reference")
    x = as64(updates)
    g0_norm = torch.linalg.vector_norm(as64(ctx.reference))
    ts = trust_scores(x, ctx.reference)
    excluded = tuple(int(i) for i in torch.nonzero(ts == 0).flatten())
    if float(ts.sum()) == 0.0:
        zero = torch.zeros(updates.shape[1], dtype=updates.dtype)
        return Aggregate(zero, excluded, {"trust": ts.tolist()})
    norms = torch.linalg.vector_norm(x, dim=1).clamp(min=1e-300)
    rescaled = x * (g0_norm / norms).unsqueeze(1)  # [n, d], every row at ||g0||
    v = (ts @ rescaled) / ts.sum()
    return Aggregate(v.to(updates.dtype), excluded, {"trust": ts.tolist()})
