"""The ``deai`` command line: :func:`main` is the console script.

What an operator runs most is answered here on the standard library alone, before
anything else is imported: ``deai``, ``deai --help`` (the command list below) and
``deai job status`` (:mod:`deai.node.status`). Every other command goes to the Typer
application in :mod:`deai.commands`, imported only then, whose plane sub-apps are in turn
imported only when one is invoked. ``deai.cli.app`` is that application (for
``typer.testing.CliRunner`` and older console scripts).
"""

from __future__ import annotations

import sys
from typing import Any

HELP = (
    "deai: decentralized AI where untrusted parties train together, every piece of work "
    "is checked, and everyone is paid by measured worth."
)

# every top-level command and its line in `deai --help`; deai.commands uses the same lines
# (tests/test_cli.py checks the two lists agree)
COMMANDS: dict[str, str] = {
    "chain": "A local anvil chain with the deai contracts.",
    "check": "Validate a scenario file without running it.",
    "cluster": "A local network: anvil plus N nodes.",
    "data": "Data providers' preprocessing (PII, dedup).",
    "demo": "Run the built-in demo through every plane.",
    "job": "Submit and follow training jobs as a requester.",
    "node": "Run a deployed node (HTTP, keystore, chain).",
    "sim": "Run a scenario file in the simulator.",
    "swarm": "Decentralized inference and fine-tuning (swarm).",
}


def help_text() -> str:
    """``deai --help``, in the layout click prints."""
    import textwrap

    width = max(map(len, COMMANDS))
    about = textwrap.fill(HELP, 78, initial_indent="  ", subsequent_indent="  ")
    rows = "\n".join(f"  {name:<{width}}  {line}" for name, line in COMMANDS.items())
    return (
        f"Usage: deai [OPTIONS] COMMAND [ARGS]...\n\n{about}\n\n"
        "Options:\n  --help  Show this message and exit.\n\n"
        f"Commands:\n{rows}\n\n"
        "Run `deai COMMAND --help` for a command's options."
    )


def _fast(args: list[str]) -> int | None:
    """The exit code of a command answered here, or None for the Typer app's."""
    if not args or args == ["--help"]:
        print(help_text())
        return 0 if args else 2  # click's no_args_is_help exits 2
    if args[:2] == ["job", "status"]:
        from deai.node.status import status_main

        try:
            return status_main(args[2:])
        except SystemExit as e:  # argparse: --help (0) or a usage error (2)
            return e.code if isinstance(e.code, int) else 2
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``deai`` with ``argv`` (default: the process's arguments); returns the exit
    code when called with ``argv``, exits with it otherwise (as the console script)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _fast(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `deai job status J | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if code is None:
        from deai.commands import app as typer_app

        try:
            typer_app(args, prog_name="deai")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if argv is None:
        sys.exit(code)
    return code


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer application, imported on first use
        from deai.commands import app as typer_app

        return typer_app
    raise AttributeError(f"module 'deai.cli' has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
