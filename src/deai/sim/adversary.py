"""The simulated adversary: attacks injected through the transport, never by copying code.

Malicious providers run the honest protocol code. Data-level attacks (label flipping,
backdoor poisoning) change what they train on through the ``Behaviour`` hook. Update-level
attacks are applied here, by an omniscient colluding attacker that taps the transport:
it sees the round's train tasks (so it knows the global model and who was drawn) and the
honest updates on their way to each validator, holds its own nodes' updates until every
honest participant's update has passed (or ``hold_s`` expires), then replaces each held
update with the one :func:`deai.attacks.apply_update_attack` crafts and sends it on. This
is the strongest threat model of Shejwalkar & Houmansadr (NDSS 2021): the attacker knows
the honest updates of the round and the aggregation rule's inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from deai.attacks.spec import AttackName, AttackSpec, apply_update_attack
from deai.compression.base import Codec, Encoded
from deai.errors import CodecError
from deai.job.spec import derive_seed
from deai.learning.params import vector_from_bytes
from deai.node.messages import Message, TrainTask, Update
from deai.sim.engine import Simulation


@dataclass(frozen=True)
class AttackerGroup:
    """One attacker: its nodes, and whether they are Sybil identities of a single update."""

    name: str
    spec: AttackSpec
    nodes: tuple[str, ...]
    sybil: bool = False  # True: every node sends a clone of the group's first node's update


@dataclass
class _Round:
    participants: set[str] = field(default_factory=set)
    global_params: Tensor | None = None
    honest: dict[str, dict[str, Tensor]] = field(default_factory=lambda: defaultdict(dict))
    held: dict[str, dict[str, tuple[Update, Tensor]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    released: set[str] = field(default_factory=set)  # validators already released
    seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # dst -> srcs
    crafted: dict[str, Update] = field(default_factory=dict)  # attacker node -> its update


class Adversary:
    def __init__(
        self,
        groups: list[AttackerGroup],
        codecs: Mapping[str, Codec],
        seed: int,
        hold_s: float,
        server_lr: float = 1.0,
        aggregate: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.groups = groups
        self.aggregate = aggregate  # the job's rule, run by the adaptive attacker
        self.server_lr = server_lr  # public (the spec's): the backdoor boost divides by it
        self.codecs = dict(codecs)
        self.seed = seed
        self.hold_s = hold_s
        self.node_group = {n: g for g in groups for n in g.nodes}
        self.rounds: dict[int, _Round] = defaultdict(_Round)
        self.crafted = 0

    @property
    def attackers(self) -> set[str]:
        return set(self.node_group)

    def intercept(self, sim: Simulation, src: str, dst: str, msg: Message) -> bool:
        """Return True when the message is taken (held) instead of sent now."""
        if isinstance(msg, TrainTask):
            r = self.rounds[msg.round]
            r.participants.add(dst)
            if r.global_params is None:
                r.global_params = vector_from_bytes(msg.model, len(msg.model) // 4)
            return False
        if not isinstance(msg, Update):
            return False
        r = self.rounds[msg.round]
        vec = self._decode(msg)
        if src not in self.node_group:
            r.seen[dst].add(src)
            if vec is not None:  # a faulty update is the validator's business
                r.honest[dst][src] = vec
            self._try_release(sim, msg.round, dst, force=False)
            return False
        if vec is None:  # fail closed: never pass an attacker's honest update off as an attack
            raise CodecError(
                f"adversary: cannot decode {src}'s update (codec {msg.codec!r}; the attacker "
                f"knows {sorted(self.codecs)}): its attack would silently not be applied"
            )
        first_hold = not r.held[dst]
        r.held[dst][src] = (msg, vec)
        if first_hold:
            sim.schedule(
                sim.now + self.hold_s, lambda: self._try_release(sim, msg.round, dst, force=True)
            )
        self._try_release(sim, msg.round, dst, force=False)
        return True

    def _decode(self, msg: Update) -> Tensor | None:
        codec = self.codecs.get(msg.codec)
        if codec is None:
            return None
        try:
            return codec.decode(Encoded(codec.name, msg.dim, msg.payload))
        except Exception:
            return None

    def _try_release(self, sim: Simulation, round_: int, dst: str, force: bool) -> None:
        r = self.rounds[round_]
        if dst in r.released or not r.held[dst]:
            return
        honest_parts = {p for p in r.participants if p not in self.node_group}
        mal_parts = {p for p in r.participants if p in self.node_group}
        ready = honest_parts <= r.seen[dst] and mal_parts <= set(r.held[dst])
        if not ready and not force:
            return
        r.released.add(dst)
        d = next(iter(r.held[dst].values()))[1].shape[0]
        honest = torch.stack(list(r.honest[dst].values())) if r.honest[dst] else torch.zeros((0, d))
        n_total = max(len(r.participants), 1)
        n_mal = max(len(mal_parts & set(r.held[dst])), 1)
        prev = self._prev_delta(round_)
        for g in self.groups:
            members = [n for n in g.nodes if n in r.held[dst]]
            if not members:
                continue
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "attack", g.name, round_))
            if g.sybil or g.spec.name is AttackName.ADAPTIVE:  # one row for the whole group
                ids = len(members)  # (the adaptive search is costly and ignores own updates)
                spec = AttackSpec(g.spec.name, g.spec.params, ids, g.spec.jitter if g.sybil else 0)
                rows = apply_update_attack(
                    spec,
                    r.held[dst][members[0]][1],
                    honest,
                    n_total,
                    n_mal,
                    gen,
                    prev,
                    self.server_lr,
                    self.aggregate,
                )
            else:
                rows = torch.stack(
                    [
                        apply_update_attack(
                            g.spec,
                            r.held[dst][m][1],
                            honest,
                            n_total,
                            n_mal,
                            gen,
                            prev,
                            self.server_lr,
                        )[0]
                        for m in members
                    ]
                )
            for m, row in zip(members, rows, strict=True):
                if m not in r.crafted:  # one update per attacker node, the same to every
                    msg = r.held[dst][m][0]  # validator (a randomized codec encodes once)
                    enc = self.codecs[msg.codec].encode(row)
                    self.crafted += 1
                    r.crafted[m] = Update(
                        msg.job_id,
                        msg.round,
                        msg.codec,  # the codec as the wire names it (name and parameters)
                        enc.dim,
                        msg.dtype,
                        enc.payload,
                        msg.num_examples,
                    )
                sim.transmit(m, dst, r.crafted[m])

    def _prev_delta(self, round_: int) -> Tensor | None:
        now, before = self.rounds.get(round_), self.rounds.get(round_ - 1)
        if now is None or before is None or now.global_params is None:
            return None
        if before.global_params is None:
            return None
        return now.global_params - before.global_params
