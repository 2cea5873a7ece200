"""`cloud audit list` and `cloud events`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from shared.cli.common import CliState, CloudCommand, CloudGroup, ListArgs, list_options, tenant_option
from shared.cli.output import cell, dump_yaml, emit_page

COLUMNS = ("time", "actor", "action", "target", "outcome", "status", "request_id")


@click.group(cls=CloudGroup)
def audit() -> None:
    """The audit log."""


@audit.command("list")
@click.option("--actor", help="Only records by this actor.")
@click.option("--action", help="Only this action (e.g. secret.create).")
@click.option("--outcome", type=click.Choice(["success", "denied", "failed"]), help="Only this outcome.")
@click.option("--target", help="Only records about this target.")
@click.option("--since", help="Only records at or after this RFC 3339 time.")
@click.option("--until", help="Only records before this RFC 3339 time.")
@list_options()
@click.pass_obj
def list_(
    state: CliState,
    list_args: ListArgs,
    actor: str | None,
    action: str | None,
    outcome: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """List audit records (newest last)."""
    page = list_args.fetch(
        state.client().audit,
        actor=actor,
        action=action,
        outcome=outcome,
        target=target,
        since=since,
        until=until,
    )
    emit_page(state.output, page, COLUMNS)


def _print_event(fmt: str, event: Mapping[str, Any]) -> None:
    if fmt == "json":
        click.echo(json.dumps(event, ensure_ascii=False))
    elif fmt == "yaml":
        click.echo("---")
        dump_yaml(dict(event))
    else:
        click.echo("  ".join(cell(event.get(column)) for column in COLUMNS[:5]))


@click.command(cls=CloudCommand)
@click.option("--count", "-n", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@tenant_option
@click.option("--all-tenants", is_flag=True, help="Events of every tenant (cluster admin).")
@click.pass_obj
def events(
    state: CliState, count: int | None, timeout: float | None, tenant: str | None, all_tenants: bool
) -> None:
    """Follow the live event stream (one line per event; JSON lines with -o json)."""
    stream = state.client().events.stream(count, timeout, tenant=tenant, all_tenants=all_tenants)
    for event in stream:
        _print_event(state.output, event)
