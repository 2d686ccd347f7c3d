"""``deai swarm``: serve blocks, run a loopback swarm, generate text and fine-tune.

=====================  ===================================================================
command                what
=====================  ===================================================================
``serve CONFIG...``    run block servers from daemon configs (one process per server)
``cluster``            anvil + swarm ledger + one server per span on loopback, until Ctrl-C;
                       writes ``DIR/cluster.json`` for ``generate`` and ``finetune``
``generate``           greedy text through a running cluster, token by token
``finetune``           prompt tuning through a running cluster, step by step
``sim``                the same roles in one process on a virtual clock (network model,
                       optional cheater), with simulated tokens per second
=====================  ===================================================================
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from deai.errors import DeaiError

app = typer.Typer(
    help="The large-model swarm: block servers, routing, verified spans.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

SPANS_HELP = "Spans as start:end,start:end (one server each), e.g. 0:10,10:20,20:30."


def _spans(text: str) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(a), int(b)) for a, b in (p.split(":") for p in text.split(",")))
    except ValueError as e:
        raise typer.BadParameter(f"spans must look like 0:10,10:20 ({e})") from e
    return out


def _model(name: str) -> Any:
    from deai.swarm.manifest import ModelKind, ModelSource

    try:
        return ModelSource(kind=ModelKind(name))
    except ValueError as e:
        raise typer.BadParameter(f"model must be one of {[k.value for k in ModelKind]}") from e


def _fail(e: DeaiError) -> None:
    # markup off: an error text such as "[2, 6)" must print as written (as deai.cli does)
    err_console.print("error: " + " ".join(str(e).split()), markup=False, highlight=False)
    raise typer.Exit(2)


def _ids(source: Any, prompt: str) -> tuple[Any, Any]:
    """Token ids of ``prompt`` and a decoder (SmolLM2's tokenizer, or raw ids)."""
    import torch

    from deai.swarm.manifest import ModelKind

    if source.kind is ModelKind.SMOLLM2:
        from transformers import AutoTokenizer

        from deai.llm.pretrained import smollm2_dir

        tok = AutoTokenizer.from_pretrained(smollm2_dir(), local_files_only=True)
        return tok(prompt, return_tensors="pt").input_ids, lambda ids: tok.decode(ids)
    try:
        ids = [int(x) for x in prompt.split(",")]
    except ValueError as e:
        raise typer.BadParameter("the random model takes comma-separated token ids") from e
    return torch.tensor([ids]), lambda ids: ",".join(str(i) for i in ids)


@app.command()
def serve(configs: list[Path] = typer.Argument(..., help="Daemon config JSON files.")) -> None:
    """Run block servers (several configs: one forked process per server)."""
    from deai.swarm.daemon import main

    console.print(f"starting {len(configs)} server(s) ...")
    try:
        raise typer.Exit(main([str(c) for c in configs]))
    except DeaiError as e:
        _fail(e)


@app.command()
def cluster(
    spans: str = typer.Option("0:2,2:4,4:6", help=SPANS_HELP),
    model: str = typer.Option("random-llama", help="random-llama or smollm2."),
    out: Path = typer.Option(Path(".deai/swarm"), help="Where cluster.json and logs go."),
) -> None:
    """Start anvil, the swarm ledger and one server process per span; stop with Ctrl-C."""
    from deai.swarm.cluster import ClusterSpec, LoopbackSwarm

    out.mkdir(parents=True, exist_ok=True)
    spec = ClusterSpec(spans=_spans(spans), model=_model(model))
    console.print(
        f"starting anvil and {len(spec.spans)} servers (importing torch takes a while) ..."
    )
    try:
        with LoopbackSwarm(spec, out) as sw:
            (out / "cluster.json").write_text(json.dumps(sw.info(), indent=1))
            for (a, b), addr, url in zip(spec.spans, sw.addresses, sw.urls, strict=True):
                console.print(f"  blocks [{a}, {b}) at {url} ({addr})")
            console.print(f"ready: {out / 'cluster.json'}; Ctrl-C stops everything")
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopped")
    except DeaiError as e:
        _fail(e)


def _client(info_path: Path) -> tuple[Any, Any, Any]:
    from deai.swarm.client import ClientConfig
    from deai.swarm.cluster import connect
    from deai.swarm.manifest import ModelSource

    info = json.loads(info_path.read_text())
    source = ModelSource.from_dict(info["model"])
    console.print("loading the client's parts of the public model ...")
    model = source.load()
    cfg = ClientConfig(ledger=info["ledger"], session_check_rate=0.0)
    c = connect(info, model, cfg)
    console.print(f"{len(c.records())} servers known")
    return c, source, model


@app.command()
def generate(
    prompt: str = typer.Option("1,5,9,33,7", help="Text (smollm2) or token ids (random-llama)."),
    tokens: int = typer.Option(32, help="New tokens, greedily."),
    cluster_file: Path = typer.Option(Path(".deai/swarm/cluster.json"), "--cluster"),
) -> None:
    """Generate greedily through a running cluster, printing each token as it arrives."""
    try:
        c, source, _ = _client(cluster_file)
        ids, decode = _ids(source, prompt)
        t0 = time.perf_counter()
        out = c.generate(
            ids, tokens, on_token=lambda i, tok: console.print(f"  token {i + 1}/{tokens}: {tok}")
        )
        dt = time.perf_counter() - t0
        console.print(decode(out[0].tolist()))
        console.print(
            f"{tokens / dt:.2f} tokens/s; recoveries {c.recoveries}; route {c.session(1).route}"
        )
    except DeaiError as e:
        _fail(e)


@app.command()
def finetune(
    steps: int = typer.Option(10, help="Optimizer steps."),
    cluster_file: Path = typer.Option(Path(".deai/swarm/cluster.json"), "--cluster"),
) -> None:
    """Prompt-tune through a running cluster on a generated corpus, printing each step."""
    import torch

    from deai.swarm.finetune import PromptTuningConfig, prompt_tune

    try:
        c, _, model = _client(cluster_file)
        vocab = int(model.config.vocab_size)
        g = torch.Generator().manual_seed(0)
        motif = torch.randint(0, vocab, (8,), generator=g)
        data = torch.stack([motif.roll(i % 8).repeat(2) for i in range(24)])

        def step(i: int, loss: float) -> None:
            console.print(f"  step {i + 1}/{steps}: loss {loss:.3f}")

        r = prompt_tune(c, data[:16], data[16:], PromptTuningConfig(steps=steps), on_step=step)
        console.print(f"held-out loss {r.loss_before:.3f} -> {r.loss_after:.3f}")
    except DeaiError as e:
        _fail(e)


@app.command()
def sim(
    spans: str = typer.Option("0:2,2:4,4:6,0:3,3:6", help=SPANS_HELP),
    tokens: int = typer.Option(16, help="New tokens, greedily."),
    latency_ms: float = typer.Option(50.0, help="One-way latency of every party."),
    mbps: float = typer.Option(100.0, help="Bandwidth of every party."),
    cheater: str = typer.Option(
        "", help="Make server 0 cheat: skip_layers, quantized, stale, random, identity."
    ),
    check_rate: float = typer.Option(1.0, help="Share of sessions re-executed on witnesses."),
) -> None:
    """Simulate a swarm in one process (random Llama) and report virtual tokens/s and checks."""
    from deai.swarm.adversary import Cheater, Strategy
    from deai.swarm.client import ClientConfig
    from deai.swarm.manifest import ModelSource
    from deai.swarm.sim import SimConfig, SimSwarm
    from deai.swarm.transport import Link

    try:
        link = Link(latency_ms / 1e3, mbps * 1e6)
        cheaters = {0: Cheater(Strategy(cheater))} if cheater else {}
        console.print("building the simulated swarm ...")
        sw = SimSwarm(
            ModelSource().load(),
            SimConfig(spans=_spans(spans), link=link, client_link=link),
            cheaters,
        )
        c = sw.client(ClientConfig(session_check_rate=check_rate))
        import torch

        t0 = sw.clock()

        def show(i: int, tok: int) -> None:
            console.print(f"  token {i + 1}/{tokens}: {tok}")

        out = c.generate(torch.tensor([[1, 5, 9, 33, 7]]), tokens, on_token=show)
        dt = sw.clock() - t0
        console.print(f"ids {out[0].tolist()}")
        console.print(f"simulated {tokens / dt:.2f} tokens/s over {dt:.1f} virtual s")
        console.print(f"checks {c.checker.stats.outcomes}; caught {c.checker.stats.caught}")
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    except DeaiError as e:
        _fail(e)
