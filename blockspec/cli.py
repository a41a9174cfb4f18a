"""The `blockspec` command line: parse arguments, call the library, render. Nothing more."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from blockspec.errors import SpecError

app = typer.Typer(
    name="blockspec",
    help="Declarative compact CNNs: YAML spec → exact layer table, rule checks, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecPath = Annotated[Path, typer.Argument(help="Architecture spec (YAML).", show_default=False)]


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


@app.command("build-summary")
def build_summary(
    spec_path: SpecPath,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    input_size: Annotated[
        Optional[tuple[int, int]],  # noqa: UP007 (Typer needs Optional here)
        typer.Option("--input-size", metavar="H W", help="Analyse at another input size."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also build the module and check it matches.")
    ] = False,
) -> None:
    """Layer table with shapes, receptive field, jump, parameters, MACs and rule checks."""
    from blockspec.load import load_spec
    from blockspec.render import as_json, markdown, print_table
    from blockspec.summary import summarize

    spec = load_spec(spec_path)
    summary = summarize(spec, input_size)
    if format is Format.json:
        typer.echo(as_json(summary))
    elif format is Format.markdown:
        typer.echo(markdown(summary))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 120)
        print_table(summary, console)
    if verify:
        from blockspec.verify import verify_against_module

        typer.echo(verify_against_module(spec, summary.analysis), err=format is Format.json)


@app.command()
def check(spec_path: SpecPath) -> None:
    """Exit 1 if any rule in the spec fails (for CI); 0 when all hold."""
    from blockspec.load import load_spec
    from blockspec.summary import summarize

    summary = summarize(load_spec(spec_path))
    if not summary.rules:
        typer.echo(f"{spec_path}: no rules to check (add a `rules:` section)")
        return
    for rule in summary.rules:
        typer.echo(f"{'✓' if rule.ok else '✗'} {rule.name}: {rule.detail}")
    failed = [rule.name for rule in summary.rules if not rule.ok]
    if failed:
        typer.echo(f"{spec_path}: {len(failed)} rule(s) violated: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{spec_path}: all {len(summary.rules)} rules hold")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors exit 2 with a message, never a traceback."""
    try:
        app(args=argv)
    except SpecError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 (a bug must still not dump a traceback)
        if os.environ.get("BLOCKSPEC_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(error).__name__}: {error}\n"
            "This is a bug in blockspec; rerun with BLOCKSPEC_DEBUG=1 for the traceback.",
            err=True,
        )
        sys.exit(70)
