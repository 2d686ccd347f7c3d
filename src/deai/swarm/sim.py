"""The swarm in simulation: many servers and a client in one process, on a virtual clock.

The roles are the deployed ones (:class:`~deai.swarm.server.BlockServer`,
:class:`~deai.swarm.client.SwarmClient`); only the transport differs
(:class:`~deai.swarm.transport.SimTransport`: network model, virtual clock, fault
injection). All servers share one copy of the public weights in memory (a cheater makes
its own copies of what it changes). Keys come from a master seed that no role reads
(``keccak("deai/swarm/sim" ++ seed ++ role ++ index)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account import Account
from eth_utils import keccak
from transformers import LlamaForCausalLM

from deai.swarm.adversary import Cheater
from deai.swarm.blocks import ClientParts
from deai.swarm.client import ClientConfig, SwarmClient
from deai.swarm.manifest import Manifest, ModelSource
from deai.swarm.receipts import NO_LEDGER
from deai.swarm.records import IdentityCheck, RecordBook
from deai.swarm.server import BlockServer, ServerConfig
from deai.swarm.transport import Link, SimTransport, VirtualClock
from deai.swarm.wire import pack


def sim_key(seed: int, role: str, index: int) -> bytes:
    return keccak(
        b"deai/swarm/sim" + seed.to_bytes(8, "big") + role.encode() + index.to_bytes(4, "big")
    )


def allow_all(owner: str) -> str | None:
    return None


@dataclass(frozen=True)
class SimConfig:
    spans: tuple[tuple[int, int], ...] = ()  # fixed spans, one server each; or use n_servers
    n_servers: int = 3  # servers that choose their own window (when spans is empty)
    n_serve: int = 2  # blocks each of those serves
    link: Link = field(default_factory=Link)  # every server's link
    client_link: Link = field(default_factory=Link)
    measured_compute: bool = True  # virtual compute time = measured wall time (else modelled)
    seed: int = 0  # master seed of keys
    ledger: str = NO_LEDGER
    price_wei: int = 0
    refresh_s: float = 20.0  # servers re-announce (and tick) this often, in virtual seconds


class SimSwarm:
    def __init__(
        self,
        model: LlamaForCausalLM,
        config: SimConfig | None = None,
        cheaters: dict[int, Cheater] | None = None,
        identity: IdentityCheck = allow_all,
        manifest: Manifest | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.model = model
        self.manifest = manifest or Manifest.of(model)
        self.clock = VirtualClock()
        self.identity = identity
        self.servers: list[BlockServer] = []
        cheaters = cheaters or {}
        client_key = sim_key(self.config.seed, "client", 0)
        self.client_key = client_key
        self.transport = SimTransport(
            Account.from_key(client_key).address,
            self.clock,
            self.config.client_link,
            self.config.measured_compute,
        )
        plan: list[tuple[int | None, int]] = (
            [(s, e - s) for s, e in self.config.spans]
            if self.config.spans
            else [(None, self.config.n_serve)] * self.config.n_servers
        )
        for i, (start, n) in enumerate(plan):
            self.add_server(start, n, cheaters.get(i), announce=start is None)
        self.gossip()
        self._next_refresh = self.clock() + self.config.refresh_s
        self.transport.on_call = self._on_call

    def _on_call(self, url: str, kind: str) -> None:
        """Servers' periodic work, driven by the virtual clock."""
        if self.clock() >= self._next_refresh:
            self._next_refresh = self.clock() + self.config.refresh_s
            for s in self.servers:
                if s.config.url not in self.transport.dead:
                    s.tick()
            self.gossip()

    def _book(self) -> RecordBook:
        return RecordBook(self.manifest, self.identity, clock=self.clock)

    def add_server(
        self, start: int | None, n_serve: int, cheater: Cheater | None = None, announce: bool = True
    ) -> BlockServer:
        i = len(self.servers)
        cfg = ServerConfig(
            n_serve=n_serve,
            url=f"sim://server-{i}",
            start=start,
            ledger=self.config.ledger,
            price_wei=self.config.price_wei,
        )
        book = self._book()
        for s in self.servers:  # a joining server first learns the swarm from its peers
            book.merge(s.book.live())
        server = BlockServer(
            cfg, self.model, self.manifest, sim_key(self.config.seed, "server", i), book,
            clock=self.clock, adversary=cheater,
        )  # fmt: skip
        self.servers.append(server)
        self.transport.add(server, self.config.link)
        if announce:  # the next joiner must see it to choose the weakest window
            self.gossip()
        return server

    def gossip(self) -> None:
        """Every server announces a fresh record to every other (one gossip round)."""
        alive = [s for s in self.servers if s.config.url not in self.transport.dead]
        recs = [s.record() for s in alive]
        body = pack({"records": [r.to_dict() for r in recs]})
        for s in alive:
            s.handle(s.address, "records_put", body)

    def client(self, config: ClientConfig | None = None, index: int = 0) -> SwarmClient:
        key = self.client_key if index == 0 else sim_key(self.config.seed, "client", index)
        parts = ClientParts(self.model)
        c = SwarmClient(
            self.manifest,
            parts,
            key,
            self.transport.as_client(Account.from_key(key).address),
            self._book(),
            config,
            bootstrap=[(s.address, s.config.url) for s in self.servers[:2]],
            price_wei=self.config.price_wei,
        )
        c.refresh()
        return c

    def kill(self, i: int) -> None:
        self.transport.kill(self.servers[i].config.url)


def load(source: ModelSource | None = None) -> LlamaForCausalLM:
    return (source or ModelSource()).load()
