"""The Typer application behind ``deai`` (entry point: :func:`deai.cli.main`, which
answers ``deai --help`` and ``deai job status`` without it): the simulator's commands
(``demo``, ``sim``, ``check``) and the planes' command groups, each imported only when
invoked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from deai.cli import COMMANDS, HELP
from deai.errors import ConfigError, DeaiError

# sub-command groups that live with their planes, imported only when one is invoked (or
# listed), so a command does not pay for the planes it does not use
LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "chain": ("deai.ledger.cli", "app"),
    "data": ("deai.privacy.cli", "app"),
    "node": ("deai.node.cli", "node_app"),
    "job": ("deai.node.cli", "job_app"),
    "cluster": ("deai.node.cli", "cluster_app"),
    "swarm": ("deai.swarm.cli", "app"),
}


class _LazyGroup(TyperGroup):
    """A Typer group whose plane sub-apps are imported on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_GROUPS})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_GROUPS and cmd_name not in self.commands:
            from importlib import import_module

            module, attr = LAZY_GROUPS[cmd_name]
            sub = typer.main.get_command(getattr(import_module(module), attr))
            sub.name = cmd_name
            sub.short_help = COMMANDS[cmd_name]  # the line `deai --help` prints
            self.add_command(sub, cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    cls=_LazyGroup,
)
console = Console()
err_console = Console(stderr=True)


def _fail(e: DeaiError) -> None:
    # markup off: an error text such as "[low, high]" must print as written
    err_console.print(
        "error: " + " ".join(str(e).split()), markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(2)


def _run(scenario: Any, out: Path, quiet: bool) -> dict[str, Any]:
    from deai.sim.report import write_outputs
    from deai.sim.runner import execute, plan, torch_threads
    from deai.sim.sections import sections_for

    planned = plan(scenario)  # everything knowable from the file fails here, before work
    with _progress(quiet) as bar:
        task = bar.add_task(f"{scenario.name}: rounds", total=scenario.rounds)
        with torch_threads(1):
            result = execute(planned, progress=lambda r, n: bar.update(task, completed=r))
    write_outputs(result, out, sections_for(result.metrics))
    if not quiet:
        _summary(result.metrics, out)
    return result.metrics


def _summary(m: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    t = Table(title=f"{m['scenario']} ({m['algorithm']}, {m['providers']} providers)")
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    t.add_row("final test accuracy", f"{m['final_accuracy']:.4f}")
    t.add_row("rounds", str(len(m["rounds"])))
    t.add_row("simulated time", f"{m['sim_time_s']:.1f} s")
    t.add_row(
        "bytes up / down",
        f"{m['total_bytes_up'] / 1e6:.2f} / {m['total_bytes_down'] / 1e6:.2f} MB",
    )
    t.add_row("rejected updates", str(len(m["rejections"])))
    t.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    console.print(t)
    reasons: dict[str, int] = {}
    for r in m["rejections"]:
        key = f"{r['sender']}: {r['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    for key, n in sorted(reasons.items()):
        console.print(f"  rejected {n}x  {key}")
    console.print(f"wrote [bold]{out / 'metrics.json'}[/] and [bold]{out / 'report.html'}[/]")


def _progress(quiet: bool) -> Any:
    """The run commands' progress bars (one per job), off with ``--quiet``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


@app.command(short_help=COMMANDS["demo"])
def demo(
    out: Annotated[Path, typer.Option(help="Directory for metrics.json and report.html.")] = Path(
        "runs/demo"
    ),
    rounds: Annotated[int | None, typer.Option(help="Override the jobs' number of rounds.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
) -> None:
    """Run the built-in demo through every plane: robust FedAvg on digits with attackers and
    faulty peers, compressed updates, rounds settled on an embedded chain (a lying
    validator is slashed, providers paid by contribution), a DP job with secure
    aggregation, and a compute market where a lazy worker is caught. Writes OUT."""
    from deai.api import check_out_dir
    from deai.sim.demo import run_demo

    try:
        check_out_dir(out)
        with _progress(quiet) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, r: int, n: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=n)
                bar.update(tasks[stage], completed=r)

            m = run_demo(out, rounds, progress)
    except DeaiError as e:
        _fail(e)
        return
    if not quiet:
        _summary(m, out)
        _demo_summary(m)


def _demo_summary(m: dict[str, Any]) -> None:
    from rich.table import Table

    led = m.get("ledger")
    if led:
        t = Table(title="payouts by contribution (on-chain claims)")
        t.add_column("provider")
        t.add_column("behaviour")
        t.add_column("contribution", justify="right")
        t.add_column("paid ETH", justify="right")
        for p in led["providers"]:
            t.add_row(
                p["node"],
                m["provider_behaviours"].get(p["node"], ""),
                f"{p['contribution']:.4f}",
                f"{p['paid_wei'] / 1e18:.4f}",
            )
        console.print(t)
        for v in led["validators"]:
            lost = (v["stake_before_wei"] - v["stake_after_wei"]) / 1e18
            console.print(
                f"  {v['node']}: {'lied, ' if v['liar'] else ''}stake "
                f"{v['stake_after_wei'] / 1e18:.2f} ETH"
                + (f" ([red]slashed {lost:.2f}[/])" if lost else "")
            )
        console.print(f"  gas used on chain: {led['gas_total']:,}")
    if "backdoor_success" in m:
        console.print(f"backdoor success (default defence): {m['backdoor_success']:.3f}")
    if m.get("codec", "identity") != "identity" and m.get("update_bytes"):
        raw, sent = m["uncompressed_update_bytes"], m["update_bytes"]
        console.print(
            f"compression ({m['codec']}): updates took {sent:,} bytes instead of "
            f"{raw:,} ({raw / sent:.1f}x smaller)"
        )
    pj = m.get("private_job")
    if pj:
        console.print(
            f"private job (DP + secure aggregation): accuracy "
            f"{pj['final_accuracy']:.3f}, epsilon {pj['privacy']['epsilon_spent']:.2f} "
            f"(budget {pj['privacy']['epsilon']}, delta {pj['privacy']['delta']})"
        )
    tm = m.get("task_market")
    if tm:
        console.print(f"compute market: {tm.get('note', '')}")


@app.command(short_help=COMMANDS["sim"])
def sim(
    scenario: Annotated[Path, typer.Argument(help="A scenario TOML file (see examples/).")],
    out: Annotated[Path, typer.Option(help="Directory for metrics.json and report.html.")] = Path(
        "runs/sim"
    ),
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Override the number of rounds.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
) -> None:
    """Run a scenario file in the simulator and write its metrics and report to OUT."""
    from deai.api import check_out_dir

    try:
        check_out_dir(out)
        s = _load(scenario, seed=seed, rounds=rounds)
        _run(s, out, quiet)
    except DeaiError as e:
        _fail(e)
    except OSError as e:  # e.g. the disk filled while writing the report
        _fail(ConfigError(f"{out}: {e.strerror or e}"))


def _load(path: Path, seed: int | None = None, rounds: int | None = None) -> Any:
    from deai.sim.scenario import load_scenario, parse_scenario

    s = load_scenario(path)
    updates: dict[str, Any] = {}
    if seed is not None:
        updates["seed"] = seed
    if rounds is not None:
        updates["rounds"] = rounds
    if updates:
        s = parse_scenario({**s.model_dump(mode="json"), **updates}, f"{path} (with options)")
    return s


@app.command(short_help=COMMANDS["check"])
def check(
    scenario: Annotated[Path, typer.Argument(help="A scenario TOML file to validate.")],
) -> None:
    """Validate a scenario file without running it: everything that would fail at run time
    for a reason knowable from the file (data, model size, rule preconditions) fails here.
    Prints what the file describes and the job id it would run under."""
    from deai.sim.runner import plan
    from deai.sim.scenario import Role

    try:
        s = _load(scenario)
        pl = plan(s)
    except DeaiError as e:
        _fail(e)
        return
    console.print(
        f"ok {scenario}: {s.name}, {s.algorithm.name} on {s.simulation.data.dataset} "
        f"({s.simulation.data.partition}), {s.count(Role.PROVIDER)} providers, "
        f"{s.count(Role.VALIDATOR)} validator(s), {s.rounds} rounds, seed {s.seed}, "
        f"model {s.model.name} with {pl.parameters:,} parameters, job {pl.spec.job_id}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
