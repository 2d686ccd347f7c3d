"""The backdoor sentinel: a validator-side trigger scan and unlearning step (Neural Cleanse,
Wang et al., IEEE S&P 2019), run by the default rule's strategy on image classification.

Why: a backdoor held by 10-20 % of the providers pushes weights that clean data barely
moves (a trigger's pixels), so no per-round rule over the rows removes it without also
removing honest rows that alone hold a rare class (docs/robustness.md). The validator holds
the requester's clean validation data, and a backdoored model has a tell there: one class is
reached from every other with a much smaller input patch than any other class needs.

Until an alert, every ``every``-th round (4, 7, 10, ...) the sentinel optimises, on the
round's start model and the validation images, for every class ``t`` a mask ``m_t`` (one
value per pixel, shared by the channels) and a pattern ``p_t`` so that
``(1 - m_t) x + m_t p_t`` is classified ``t``, with an L1 penalty on the mask (Adam, fixed
steps, seeded). A class whose mask flips at least ``min_success`` of the other classes'
images with an L1 at most ``ratio`` times the median class's raises the alert, which stays
for the rest of the job. From then on, every round:

* each row's own model (the row scaled to the median norm, added to the start model) is
  scored by the trigger hits the alert's trigger gets from it above its clean hits; a
  sender's evidence grows by its score above the round's median + ``margin``, and above
  ``evidence`` its rows get weight 0 for the rest of the job;
* the new model is fine-tuned for ``unlearn_steps`` full-batch SGD steps on the validation
  images, clean and stamped with the target's trigger re-reversed on the start model, under
  their true labels (Neural Cleanse's unlearning), until no live row has carried the
  trigger for ``quiet_rounds`` rounds, the start model's own hits are at most ``residual``
  and a full scan finds the target's mask above ``clear_ratio`` times the median.

Without an alert nothing changes: in the benchmark's no-attack runs and its other attacks
it never fired (docs/robustness.md).

Threat model: any minority of providers; the validator is honest (on settled jobs the
committee's commit-reveal of each round's model outvotes a member that deviates). Not
covered, by construction: triggers that need a large patch or a blend over the whole image
(their mask is not small), an attacker that targets several classes at once so no single
class stands out from the median, a trigger that changes over rounds (the evidence is
scored with the alert's trigger), and tasks other than image classification (the sentinel
then does not run; asking for it there refuses the job). Unlearning is shallow: honest
models trained for several epochs from an unlearned model can obey the trigger again, and
such a provider gathers evidence too. Cost: ``steps`` forward and backward passes over
``classes x`` the validation set per scan, one class per round once alerted, plus the
unlearning steps and two forward passes per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from deai.errors import ConfigError
from deai.learning.data import Dataset
from deai.learning.params import FlatModel, TaskName


@dataclass(frozen=True)
class SentinelConfig:
    """The sentinel's settings; the defaults are the measured ones (docs/robustness.md)."""

    ratio: float = 0.5  # alert when a class's mask L1 is at most this share of the median's
    min_success: float = 0.8  # a mask counts only if it flips this share of the images
    steps: int = 300  # Adam steps of the trigger reversal
    l1: float = 0.3  # weight of the mask's L1 norm against the flipping loss
    lr: float = 0.1  # Adam's step size on the mask and pattern logits
    every: int = 3  # scan rounds 4, 7, 10, ... (every this many) until the alert
    unlearn_steps: int = 30  # full-batch SGD steps of unlearning per alerted round
    unlearn_lr: float = 0.1
    margin: float = 0.05  # a row's evidence grows by its score above the median + this
    evidence: float = 0.3  # evidence above which a sender is left out for the job's rest
    min_score: float = 0.1  # a live row this far above the median still carries the trigger
    quiet_rounds: int = 5  # unlearning stops after this many alerted rounds in a row
    # without a live row carrying the trigger, once the start model's own trigger hits
    residual: float = 0.02  # are at most this and a full scan finds the target's mask
    clear_ratio: float = 0.7  # above this share of the median's (it resumes otherwise)

    def __post_init__(self) -> None:
        for name in ("ratio", "clear_ratio", "min_success"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"sentinel {name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("steps", "every", "unlearn_steps", "quiet_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sentinel {name} must be >= 1, got {getattr(self, name)}")
        for name in ("l1", "lr", "unlearn_lr", "evidence"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"sentinel {name} must be > 0, got {getattr(self, name)}")
        for name in ("margin", "min_score", "residual"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"sentinel {name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TriggerScan:
    """Reversed triggers of the scanned classes: ``masks[k]`` ``[1, H, W]``, ``patterns[k]``
    ``[C, H, W]``, the mask's L1 norm and the share of other-class images it flips."""

    classes: tuple[int, ...]
    masks: Tensor
    patterns: Tensor
    l1: Tensor
    success: Tensor


def requested(aggregator: object) -> bool | None:
    """What the job's rule asks of the sentinel: ``False`` (off, or a rule without one),
    ``None`` (run it where it can) or ``True`` (required). Only the default rule has one."""
    from deai.aggregation.default import DefaultAggregator

    if not isinstance(aggregator, DefaultAggregator):
        return False
    return aggregator.config.sentinel


def applicable(model: FlatModel, validation: Dataset) -> str | None:
    """Why the sentinel cannot run on this job (None: it can)."""
    if model.task is not TaskName.CLASSIFICATION:
        return f"the task is {model.task.value}, not image classification"
    if len(validation) == 0:
        return "the requester's validation data is empty"
    if validation.x.ndim < 3 or not validation.x.is_floating_point():
        return f"the inputs are not images (validation x has shape {tuple(validation.x.shape)})"
    return None


def stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """``(1 - mask) x + mask pattern`` over a batch ``x [N, C, H, W]`` (or ``[N, H, W]``)."""
    return (1.0 - mask) * x + mask * pattern


def reverse_triggers(
    model: FlatModel,
    flat: Tensor,
    data: Dataset,
    config: SentinelConfig,
    seed: int,
    classes: tuple[int, ...] | None = None,
) -> TriggerScan:
    """Neural Cleanse's reversal for each class in ``classes`` (default: all), batched."""
    x, y = data.x, data.y
    n_classes = int(model.forward(flat.detach(), x[:1]).shape[-1])
    cls = tuple(range(n_classes)) if classes is None else classes
    k = len(cls)
    gen = torch.Generator().manual_seed(seed)
    mshape = (k, *([1] * (x.ndim - 3)), *x.shape[-2:])  # one mask value per pixel
    a = (torch.randn(mshape, generator=gen) * 0.1 - 2.0).requires_grad_(True)
    b = (torch.randn((k, *x.shape[1:]), generator=gen) * 0.1).requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=config.lr)
    frozen = flat.detach()
    targets = torch.tensor(cls)
    keep = (y[None, :] != targets[:, None]).to(x.dtype)  # [k, N] images of other classes
    count = keep.sum(dim=1).clamp(min=1.0)
    tgt = targets[:, None].expand(k, x.shape[0]).reshape(-1)

    def logits(m: Tensor, p: Tensor) -> Tensor:
        xs = stamp(x[None], m[:, None], p[:, None])  # [k, N, ...]
        return model.forward(frozen, xs.reshape(-1, *x.shape[1:]))

    for _ in range(config.steps):
        m, p = torch.sigmoid(a), torch.sigmoid(b)
        ce = F.cross_entropy(logits(m, p), tgt, reduction="none").reshape(k, -1)
        loss = ((ce * keep).sum(dim=1) / count).sum() + config.l1 * m.reshape(k, -1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        m, p = torch.sigmoid(a), torch.sigmoid(b)
        hit = (logits(m, p).argmax(dim=-1) == tgt).reshape(k, -1).to(x.dtype)
        success = (hit * keep).sum(dim=1) / count
        return TriggerScan(cls, m, p, m.reshape(k, -1).sum(dim=1), success)


def reached_median(scan: TriggerScan, config: SentinelConfig) -> float:
    """The median mask L1 of the classes whose mask flips ``min_success`` of the images
    (inf when fewer than three do: too few to say what a normal class needs)."""
    ok = scan.success >= config.min_success
    return float(scan.l1[ok].median()) if int(ok.sum()) >= 3 else float("inf")


def suspect(scan: TriggerScan, config: SentinelConfig) -> int | None:
    """The class a small trigger reaches (its scan index), or None: among the classes whose
    mask flips ``min_success`` of the images (at least three), the smallest mask, if its L1
    is at most ``ratio`` times their median."""
    med = reached_median(scan, config)
    if med == float("inf"):
        return None
    i = int(torch.where(scan.success >= config.min_success, scan.l1, torch.inf).argmin())
    return i if float(scan.l1[i]) <= config.ratio * med else None


def unlearn(
    model: FlatModel,
    flat: Tensor,
    data: Dataset,
    mask: Tensor,
    pattern: Tensor,
    config: SentinelConfig,
) -> Tensor:
    """``unlearn_steps`` full-batch SGD steps on the validation images, clean and stamped
    with the reversed trigger, under their true labels."""
    theta = flat.detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=config.unlearn_lr)
    stamped = stamp(data.x, mask, pattern)
    for _ in range(config.unlearn_steps):
        loss = F.cross_entropy(model.forward(theta, stamped), data.y) + F.cross_entropy(
            model.forward(theta, data.x), data.y
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return theta.detach().to(flat.dtype)


class BackdoorSentinel:
    """One job's sentinel (stateful: the alert, the evidence per sender, the bans).

    Per round, in this order: :meth:`scan` on the round's start model, :meth:`suspects`
    among the round's rows (the strategy gives the banned senders' rows weight 0) and
    :meth:`unlearn_round` on the new model."""

    def __init__(
        self, model: FlatModel, validation: Dataset, config: SentinelConfig, seed: int
    ) -> None:
        why = applicable(model, validation)
        if why is not None:
            raise ConfigError(f"the backdoor sentinel cannot run: {why}")
        self.model, self.validation, self.config, self.seed = model, validation, config, seed
        self.alert: int | None = None  # the target class once a scan found one
        self.trigger: tuple[Tensor, Tensor] | None = None  # this round's (mask, pattern)
        self.start: Tensor | None = None
        self.evidence: dict[str, float] = {}  # summed trigger-score excess per sender
        self.banned: set[str] = set()
        self.first: tuple[Tensor, Tensor] | None = None  # the trigger the alert found
        self.clear = False  # alerted, and the last full scan found the target's mask large
        self.residual = 1.0  # the start model's trigger hits above its clean hits
        self.quiet = 0  # alerted rounds in a row in which no live row carried the trigger

    def scan(self, round_: int, start: Tensor) -> str:
        """Reverse the triggers on ``start`` when due; returns a note (empty: nothing new)."""
        cfg = self.config
        self.trigger, self.start = None, start
        if self.alert is None and (round_ == 1 or (round_ - 1) % cfg.every != 0):
            return ""  # round 1 starts from the untrained initial model: nothing to find
        settled = self.quiet >= cfg.quiet_rounds and self.residual <= cfg.residual
        only = None if self.alert is None or settled else (self.alert,)
        with self.model.lock:
            scan = reverse_triggers(
                self.model, start, self.validation, cfg, self.seed + round_, only
            )
        if self.alert is not None:  # alerted: the target's trigger as it is now
            t = scan.classes.index(self.alert)
            self.trigger = (scan.masks[t], scan.patterns[t])
            if settled:  # still a small mask? then the backdoor is not gone yet
                small = float(scan.l1[t]) <= cfg.clear_ratio * reached_median(scan, cfg)
                self.clear = not (bool(scan.success[t] >= cfg.min_success) and small)
            else:
                self.clear = False
            return ""
        i = suspect(scan, cfg)
        if i is None:
            return ""
        self.alert = scan.classes[i]
        self.first = self.trigger = (scan.masks[i], scan.patterns[i])
        return (
            f"backdoor sentinel: class {self.alert} is reached with a mask of L1 "
            f"{float(scan.l1[i]):.1f} (median class {reached_median(scan, cfg):.1f}); "
            "unlearning it from now on"
        )

    def suspects(self, rows: Tensor, senders: tuple[str, ...]) -> tuple[set[str], Tensor]:
        """Senders to leave out (for the rest of the job). Each row, scaled down to the
        rows' median norm and added to the start model, is scored by the share of the other
        classes' validation images it sends to the target once stamped with the trigger the
        alert found, minus the share it sends there clean: what that provider's own model
        learnt of the trigger. A sender's evidence grows by its score above the round's
        median + ``margin``; above ``evidence`` it is banned. Every honest row inherits the
        start model's backdoor equally, so the median cancels it. Also returns the scores
        (zeros without an alert)."""
        cfg = self.config
        if self.alert is None or self.first is None or self.start is None:
            return set(self.banned), torch.zeros(len(senders), dtype=torch.float64)
        t = self.alert
        keep = self.validation.y != t
        clean = self.validation.x[keep]
        stamped = stamp(clean, *self.first)
        norms = torch.linalg.vector_norm(rows, dim=1)
        scale = (norms.median() / norms.clamp(min=1e-30)).clamp(max=1.0)
        local = self.start[None] + rows * scale[:, None].to(rows.dtype)

        def learnt(params: Tensor) -> float:  # trigger hits above clean hits on the target
            hit = (self.model.forward(params, stamped).argmax(dim=-1) == t).double()
            base = (self.model.forward(params, clean).argmax(dim=-1) == t).double()
            return float(hit.mean() - base.mean())

        with torch.no_grad(), self.model.lock:
            score = torch.tensor([learnt(p) for p in local], dtype=torch.float64)
            self.residual = learnt(self.start)  # the start model's own backdoor
        excess = score - score.median()  # [n] trigger hits above the round's median row
        live = torch.tensor([s not in self.banned for s in senders])
        pushing = bool(((excess > cfg.min_score) & live).any())
        self.quiet = 0 if pushing else self.quiet + 1
        if self.quiet < cfg.quiet_rounds:  # evidence only while someone pushes the trigger
            for s, e in zip(senders, (excess - cfg.margin).clamp(min=0.0).tolist(), strict=True):
                self.evidence[s] = self.evidence.get(s, 0.0) + e
                if self.evidence[s] > cfg.evidence:
                    self.banned.add(s)
        return set(self.banned), score

    def unlearn_round(self, new: Tensor) -> Tensor:
        """``new`` after unlearning this round's trigger (``new`` itself without one)."""
        if self.trigger is None or self.clear:
            return new
        with self.model.lock:
            return unlearn(self.model, new, self.validation, *self.trigger, self.config)
