"""Rendering of API results as a table (rich), JSON or YAML.

JSON and YAML are printed with ``click.echo`` (no markup, no colour) so they can be parsed;
tables are drawn with rich, with every cell rendered as plain text (never as markup).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

NON_TTY_WIDTH = 200


def console() -> Console:
    """A rich console on the current stdout (wide and colourless when it is not a terminal)."""
    stream = sys.stdout
    width = None if stream.isatty() else NON_TTY_WIDTH
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=False)


def print_rich(renderable: Any) -> None:
    """Print a rich renderable on stdout without trailing spaces on its lines."""
    out = console()
    with out.capture() as captured:
        out.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def cell(value: Any) -> str:
    """A value as table text: ``-`` for null, JSON for nested values."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def dump_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def dump_yaml(data: Any) -> None:
    """Print ``data`` as YAML."""
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def print_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """A table with one row per item; columns default to the keys of the first item."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column.upper().replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell(row.get(column))) for column in columns))
    print_rich(table)


def print_object(obj: Mapping[str, Any], fields: Sequence[str] | None = None) -> None:
    """A two-column field/value table for one object."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key in fields if fields is not None else list(obj.keys()):
        table.add_row(Text(key), Text(cell(obj.get(key))))
    print_rich(table)


def emit(fmt: str, data: Any, *, fields: Sequence[str] | None = None) -> None:
    """Print one object (or any value) in ``fmt``."""
    if fmt == "json":
        dump_json(data)
    elif fmt == "yaml":
        dump_yaml(data)
    elif isinstance(data, Mapping):
        print_object(data, fields)
    else:
        click.echo(cell(data))


def emit_page(fmt: str, page: Mapping[str, Any], columns: Sequence[str]) -> None:
    """Print a list page; in a table, say how to get the next page if there is one."""
    if fmt != "table":
        emit(fmt, dict(page))
        return
    items = page.get("items") or []
    if items:
        print_table(items, columns)
    else:
        click.echo("No items.", err=True)
    marker = page.get("next_marker")
    if marker:
        click.echo(f"More results: repeat with --marker {marker} (or --all).", err=True)


def emit_done(fmt: str, message: str, data: Mapping[str, Any]) -> None:
    """Confirm an action without a response body: ``message`` in a table, ``data`` in JSON/YAML."""
    if fmt == "table":
        click.echo(message)
    else:
        emit(fmt, dict(data))
