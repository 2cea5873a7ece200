"""`cloud key ...`: API keys."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_done, emit_page

COLUMNS = ("id", "name", "user_id", "expires_at", "revoked", "created_at")


@click.group(cls=CloudGroup)
def key() -> None:
    """API keys."""


@key.command("create")
@click.argument("name")
@click.option("--user", help="Create the key for this user (admin; default: yourself).")
@click.option("--expires", type=click.IntRange(min=1), help="Expire the key after this many seconds.")
@tenant_option
@click.pass_obj
def create(state: CliState, name: str, user: str | None, expires: int | None, tenant: str | None) -> None:
    """Create an API key; its secret is shown only this once."""
    created = state.client().keys.create(name, user=user, expires_in_seconds=expires, tenant=tenant)
    emit(state.output, created)
    if state.output == "table":
        click.echo("Store the secret now: it cannot be shown again.", err=True)


@key.command("list")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List API keys."""
    emit_page(state.output, list_args.fetch(state.client().keys), COLUMNS)


@key.command("show")
@click.argument("key_id", metavar="ID")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, key_id: str, stale: bool, tenant: str | None) -> None:
    """Show an API key's metadata."""
    emit(state.output, state.client().keys.get(key_id, stale=stale, tenant=tenant))


@key.command("revoke")
@click.argument("key_id", metavar="ID")
@tenant_option
@click.pass_obj
def revoke(state: CliState, key_id: str, tenant: str | None) -> None:
    """Revoke an API key (immediately, on every controller)."""
    state.client().keys.revoke(key_id, tenant=tenant)
    emit_done(state.output, f"Revoked key {key_id}.", {"key": key_id, "revoked": True})
