"""`cloud s3 credentials ...` and `cloud bucket list`."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options
from shared.cli.output import emit, emit_done, emit_page

CREDENTIAL_COLUMNS = ("access_key_id", "user_id", "created_at")
BUCKET_COLUMNS = ("name", "versioning", "created_by", "created_at")


@click.group(cls=CloudGroup)
def s3() -> None:
    """S3-compatible object storage."""


@s3.group("credentials", cls=CloudGroup)
def credentials() -> None:
    """Your S3 access keys."""


@credentials.command("create")
@click.pass_obj
def create(state: CliState) -> None:
    """Create an S3 access key for yourself (the secret is shown once)."""
    emit(state.output, state.client().s3.credentials.create())


@credentials.command("list")
@list_options(tenant_scoped=False)
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List S3 access keys (never their secrets)."""
    emit_page(state.output, list_args.fetch(state.client().s3.credentials), CREDENTIAL_COLUMNS)


@credentials.command("delete")
@click.argument("access_key_id")
@click.pass_obj
def delete(state: CliState, access_key_id: str) -> None:
    """Delete an S3 access key."""
    state.client().s3.credentials.delete(access_key_id)
    emit_done(state.output, f"Deleted S3 access key {access_key_id}.",
              {"access_key_id": access_key_id, "deleted": True})


@click.group(cls=CloudGroup)
def bucket() -> None:
    """S3 buckets (read only here; create them with any S3 client)."""


@bucket.command("list")
@list_options()
@click.pass_obj
def list_buckets(state: CliState, list_args: ListArgs) -> None:
    """List your tenant's buckets."""
    emit_page(state.output, list_args.fetch(state.client().buckets), BUCKET_COLUMNS)
