"""`cloud tenant ...` (cluster admin)."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option
from shared.cli.output import emit, emit_done, emit_page

COLUMNS = ("id", "name", "description", "created_at")


@click.group(cls=CloudGroup)
def tenant() -> None:
    """Tenants (cluster admin)."""


@tenant.command("create")
@click.argument("name")
@click.option("--description", "-d", help="Free-text description.")
@click.pass_obj
def create(state: CliState, name: str, description: str | None) -> None:
    """Create a tenant."""
    emit(state.output, state.client().tenants.create(name, description))


@tenant.command("list")
@list_options(tenant_scoped=False)
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List tenants."""
    emit_page(state.output, list_args.fetch(state.client().tenants), COLUMNS)


@tenant.command("show")
@click.argument("tenant_ref", metavar="TENANT")
@stale_option
@click.pass_obj
def show(state: CliState, tenant_ref: str, stale: bool) -> None:
    """Show a tenant (by id or name)."""
    emit(state.output, state.client().tenants.get(tenant_ref, stale=stale))


@tenant.command("delete")
@click.argument("tenant_ref", metavar="TENANT")
@click.pass_obj
def delete(state: CliState, tenant_ref: str) -> None:
    """Delete an empty tenant."""
    state.client().tenants.delete(tenant_ref)
    emit_done(state.output, f"Deleted tenant {tenant_ref}.", {"tenant": tenant_ref, "deleted": True})
