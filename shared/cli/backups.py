"""`cloud backup ...`: snapshot exports to S3 (`cloud snapshot export` makes one, `cloud volume create
--from-backup` restores one)."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_done, emit_page

BACKUP_COLUMNS = ("id", "volume", "bucket", "key", "size_gb", "status", "created_at")


@click.group(cls=CloudGroup)
def backup() -> None:
    """Volume backups in S3 buckets."""


@backup.command("list")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List backups."""
    emit_page(state.output, list_args.fetch(state.client().backups), BACKUP_COLUMNS)


@backup.command("show")
@click.argument("backup_id", metavar="BACKUP")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, backup_id: str, stale: bool, tenant: str | None) -> None:
    """Show a backup."""
    emit(state.output, state.client().backups.get(backup_id, stale=stale, tenant=tenant))


@backup.command("delete")
@click.argument("backup_id", metavar="BACKUP")
@tenant_option
@click.pass_obj
def delete(state: CliState, backup_id: str, tenant: str | None) -> None:
    """Delete a backup record (the object stays in its bucket)."""
    state.client().backups.delete(backup_id, tenant=tenant)
    emit_done(state.output, f"Deleted backup {backup_id} (its object stays in the bucket).",
              {"backup": backup_id, "deleted": True})
