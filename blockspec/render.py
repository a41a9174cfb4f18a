"""Summaries as text: a rich table for terminals, Markdown for READMEs, JSON for tools."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from blockspec.analysis import LayerRow
from blockspec.rules import RuleResult
from blockspec.summary import Summary

COLUMNS = ("Block", "Layer", "Kind", "k/s/d/p", "Output", "RF", "Jump", "Params", "MACs")


def _cells(row: LayerRow) -> tuple[str, ...]:
    window = row.window
    if row.global_pool:
        geometry = "global"
    elif window:
        geometry = f"{window.k}/{window.stride}/{window.dilation}/{window.padding}"
    else:
        geometry = ""
    return (
        row.block,
        row.name,
        row.kind,
        geometry,
        "×".join(map(str, row.out_shape)),
        str(row.rf),
        str(row.jump),
        f"{row.params:,}",
        f"{row.macs:,}",
    )


def _totals(summary: Summary) -> list[str]:
    analysis = summary.analysis
    rf_row = analysis.rf_row
    return [
        f"Total params: {analysis.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"MACs: {analysis.macs:,} ({analysis.macs / 1e6:.2f} M)",
        f"Receptive field: {analysis.receptive_field}"
        + (f" (at {rf_row.name}, the last spatial map before global pooling)" if rf_row else ""),
    ]


def rule_line(rule: RuleResult) -> str:
    return f"{'✓' if rule.ok else '✗'} {rule.name}: {rule.detail}"


NUMERIC = frozenset({"RF", "Jump", "Params", "MACs"})  # right-aligned, in every table


def _table(columns: Sequence[str], **options: Any) -> Table:
    table = Table(**options)
    for column in columns:
        table.add_column(column, justify="right" if column in NUMERIC else "left")
    return table


def _markdown_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Header, alignment and rows, a `|` inside a cell escaped."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if c in NUMERIC else "---" for c in columns) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def print_unsqueezed(table: Table, console: Console) -> None:
    """Print `table` at its natural width even on a narrower terminal: squeezed, rich would cut
    the numbers to "884,7…"; a line the terminal wraps still shows every digit."""
    widen(console, Measurement.get(console, console.options.update(width=10**4), table).maximum)
    console.print(table, crop=False)


def widen(console: Console, width: int) -> None:
    """At least `width` columns, on a dumb terminal too (where rich would keep 80 unless the
    height is set as well)."""
    console.size = (max(console.width, width), console.height)


def print_table(summary: Summary, console: Console) -> None:
    shape = "×".join(map(str, summary.analysis.input_shape))
    table = _table(COLUMNS, title=f"{summary.spec.name}  (input {shape})", title_justify="left")
    previous_block = None
    for row in summary.analysis.rows:
        cells = _cells(row)
        if row.block == previous_block:
            cells = ("", *cells[1:])
        elif previous_block is not None:
            table.add_section()
        previous_block = row.block
        table.add_row(*cells)
    print_unsqueezed(table, console)
    for line in _totals(summary):
        console.print(line, highlight=False)
    for rule in summary.rules:
        mark = "[green]✓[/green]" if rule.ok else "[red]✗[/red]"
        console.print(f"{mark} {rule.name}: {rule.detail}", highlight=False)


def table_text(summary: Summary, width: int = 100) -> str:
    """The table `build-summary` prints, as plain text."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    print_table(summary, console)
    return console.file.getvalue()


def markdown(summary: Summary) -> str:
    shape = "×".join(map(str, summary.analysis.input_shape))
    lines = [f"### {summary.spec.name} (input {shape})", ""]
    lines += _markdown_table(COLUMNS, (_cells(row) for row in summary.analysis.rows))
    lines.append("")
    lines += [f"- {line}" for line in [*_totals(summary), *map(rule_line, summary.rules)]]
    return "\n".join(lines) + "\n"


COMPARISON_COLUMNS = ("File", "Name", "Params", "MACs", "RF", "Output", "Rules")


def _comparison_cells(path: str, summary: Summary) -> tuple[str, ...]:
    analysis = summary.analysis
    failed = [rule.name for rule in summary.rules if not rule.ok]
    if not summary.rules:
        rules = "none"
    elif failed:
        rules = "✗ " + ", ".join(failed)
    else:
        rules = f"✓ all {len(summary.rules)}"
    return (path, summary.spec.name, f"{analysis.total_params:,}", f"{analysis.macs:,}",
            str(analysis.receptive_field), "×".join(map(str, analysis.output_shape)), rules)


def print_comparison(compared: Sequence[tuple[str, Summary]], console: Console) -> None:
    """`compare`'s table: one row per (file, summary)."""
    table = _table(COMPARISON_COLUMNS)
    for path, summary in compared:
        table.add_row(*_comparison_cells(path, summary))
    print_unsqueezed(table, console)


def comparison_markdown(compared: Sequence[tuple[str, Summary]]) -> str:
    lines = _markdown_table(COMPARISON_COLUMNS, (_comparison_cells(path, summary) for path, summary in compared))
    return "\n".join(lines) + "\n"


def as_json(document: dict | list) -> str:
    """A summary's `to_dict()`, and whatever a command adds to it, as indented JSON."""
    return json.dumps(document, indent=2)
