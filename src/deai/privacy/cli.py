"""``deai data``: data-provider preprocessing commands (mounted by the top-level CLI)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from deai.errors import ConfigError
from deai.privacy.text import ScrubConfig, load_patterns, scrub_file

app = typer.Typer(help="Prepare a data provider's corpus: PII scrubbing and deduplication.")


@app.command()
def scrub(
    src: Path = typer.Argument(..., exists=True, dir_okay=False, help="input .txt or .jsonl"),
    dst: Path = typer.Argument(..., dir_okay=False, help="where to write the scrubbed corpus"),
    patterns: Path | None = typer.Option(
        None, "--patterns", exists=True, dir_okay=False, help="extra 'NAME REGEX' lines"
    ),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="drop near-duplicates"),
    threshold: float = typer.Option(0.8, "--threshold", help="MinHash Jaccard threshold"),
) -> None:
    """Replace PII with [KIND] tokens and drop near-duplicate documents."""
    try:
        custom = load_patterns(patterns) if patterns else ()
        summary = scrub_file(src, dst, ScrubConfig(custom=custom), dedup, threshold)
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from e
    table = Table(title=f"scrubbed {src} -> {dst}")
    table.add_column("removed")
    table.add_column("count", justify="right")
    for kind, count in summary.counts.items():
        table.add_row(kind, str(count))
    table.add_row("near-duplicate documents", str(summary.duplicates_removed))
    Console().print(table)
    Console().print(f"documents: {summary.documents_in} in, {summary.documents_out} out")
