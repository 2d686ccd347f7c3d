"""A count-based n-gram baseline for the language-model benchmarks.

A model trained by gradient descent should beat counting. :func:`ngram_loss` fits an
interpolated bigram model on the training windows (Jelinek-Mercer: ``p(b | a) =
lam * c(a, b) / c(a) + (1 - lam) * p_uni(b)``, with add-one unigrams so no test token has
probability zero) and returns its mean next-token cross-entropy on the test windows,
scored exactly as the trainer scores a causal LM (every ``x[:, 1:]`` given ``x[:, :-1]``).
``lam`` is picked on the training windows' last tenth, held out from the counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from deai.errors import ConfigError

LAMBDAS = (0.5, 0.7, 0.8, 0.9, 0.95)


def _pairs(windows: Tensor) -> tuple[Tensor, Tensor]:
    ids = windows.long()  # [N, T + 1]
    return ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1)


def _counts(train: Tensor, vocab: int) -> tuple[Tensor, Tensor, Tensor]:
    a, b = _pairs(train)
    pair = torch.bincount(a * vocab + b, minlength=vocab * vocab).reshape(vocab, vocab)
    ctx = pair.sum(dim=1)  # [V]
    uni = (torch.bincount(b, minlength=vocab) + 1).double()
    return pair, ctx, uni / uni.sum()


def _nll(pair: Tensor, ctx: Tensor, uni: Tensor, test: Tensor, lam: float) -> float:
    a, b = _pairs(test)
    c_ab, c_a = pair[a, b].double(), ctx[a].double()
    bigram = torch.where(c_a > 0, c_ab / c_a.clamp_min(1), torch.zeros_like(c_ab))
    lam_a = torch.where(c_a > 0, torch.full_like(c_ab, lam), torch.zeros_like(c_ab))
    p = lam_a * bigram + (1 - lam_a) * uni[b]
    return float(-p.log().mean())


def ngram_loss(train: Sequence[Tensor], test: Tensor, vocab: int) -> dict[str, float]:
    """Mean next-token cross-entropy (nats) of the interpolated bigram on ``test``."""
    if vocab > 16_384:
        raise ConfigError(f"ngram: a dense bigram table of vocabulary {vocab} is too large")
    windows = torch.cat([t.long() for t in train])
    n_dev = max(1, len(windows) // 10)
    fit, dev = windows[:-n_dev], windows[-n_dev:]
    pair, ctx, uni = _counts(fit, vocab)
    lam = min(LAMBDAS, key=lambda x: _nll(pair, ctx, uni, dev, x))
    pair, ctx, uni = _counts(windows, vocab)
    unigram = float(-uni[_pairs(test)[1]].log().mean())
    return {"bigram": _nll(pair, ctx, uni, test, lam), "unigram": unigram, "lambda": lam}
