"""`cloud secret ...`."""

from __future__ import annotations

import click

from shared.cli.common import (
    CliState,
    CloudGroup,
    ListArgs,
    list_options,
    read_secret,
    stale_option,
    tenant_option,
)
from shared.cli.output import emit, emit_done, emit_page

COLUMNS = ("name", "version", "created_by", "created_at", "updated_at")

value_option = click.option("--value", help="The value (visible in the process list; prefer --value-stdin).")
value_stdin_option = click.option("--value-stdin", is_flag=True, help="Read the value from stdin.")


@click.group(cls=CloudGroup)
def secret() -> None:
    """Secrets."""


@secret.command("create")
@click.argument("name")
@value_option
@value_stdin_option
@tenant_option
@click.pass_obj
def create(state: CliState, name: str, value: str | None, value_stdin: bool, tenant: str | None) -> None:
    """Create a secret (the value is prompted for unless --value or --value-stdin)."""
    data = read_secret(value, value_stdin, "Value")
    emit(state.output, state.client().secrets.create(name, data, tenant=tenant))


@secret.command("list")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List secrets (metadata only)."""
    emit_page(state.output, list_args.fetch(state.client().secrets), COLUMNS)


@secret.command("show")
@click.argument("name")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, name: str, stale: bool, tenant: str | None) -> None:
    """Show a secret's metadata."""
    emit(state.output, state.client().secrets.get(name, stale=stale, tenant=tenant))


@secret.command("get")
@click.argument("name")
@stale_option
@tenant_option
@click.pass_obj
def get(state: CliState, name: str, stale: bool, tenant: str | None) -> None:
    """Print a secret's value (with -o json/yaml: name, version and value)."""
    result = state.client().secrets.get_value(name, stale=stale, tenant=tenant)
    if state.output == "table":
        click.echo(result.get("value", ""))
    else:
        emit(state.output, result)


@secret.command("rotate")
@click.argument("name")
@value_option
@value_stdin_option
@tenant_option
@click.pass_obj
def rotate(state: CliState, name: str, value: str | None, value_stdin: bool, tenant: str | None) -> None:
    """Replace a secret's value (its version goes up by one)."""
    data = read_secret(value, value_stdin, "New value")
    emit(state.output, state.client().secrets.rotate(name, data, tenant=tenant))


@secret.command("delete")
@click.argument("name")
@tenant_option
@click.pass_obj
def delete(state: CliState, name: str, tenant: str | None) -> None:
    """Delete a secret."""
    state.client().secrets.delete(name, tenant=tenant)
    emit_done(state.output, f"Deleted secret {name}.", {"secret": name, "deleted": True})
