"""`cloud user ...` and `cloud role ...`."""

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
from shared.cli.output import emit, emit_done, emit_page, print_table

COLUMNS = ("id", "name", "role", "tenant_id", "disabled", "created_at")


@click.group(cls=CloudGroup)
def user() -> None:
    """Users of a tenant."""


@user.command("create")
@click.argument("name")
@click.option("--role", "-r", required=True, help="admin, developer or viewer.")
@click.option("--tenant", help="Create the user in this tenant (cluster admin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--no-password", is_flag=True, help="Create a user without a password (API keys only).")
@click.pass_obj
def create(
    state: CliState, name: str, role: str, tenant: str | None, password_stdin: bool, no_password: bool
) -> None:
    """Create a user; the password is prompted for unless --password-stdin or --no-password."""
    if no_password and password_stdin:
        raise click.UsageError("use either --password-stdin or --no-password, not both")
    password = None
    if not no_password:
        password = read_secret(None, password_stdin, "Password", flag="--password")
    emit(state.output, state.client().users.create(name, role, password=password, tenant=tenant))


@user.command("list")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List users."""
    emit_page(state.output, list_args.fetch(state.client().users), COLUMNS)


@user.command("show")
@click.argument("name")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, name: str, stale: bool, tenant: str | None) -> None:
    """Show a user (by id or name)."""
    emit(state.output, state.client().users.get(name, stale=stale, tenant=tenant))


@user.command("update")
@click.argument("name")
@click.option("--role", "-r", help="New role.")
@click.option("--disable/--enable", "disabled", default=None, help="Disable or re-enable the user.")
@click.option("--password-stdin", is_flag=True, help="Set a new password read from stdin.")
@click.option("--password-prompt", is_flag=True, help="Set a new password, prompted for.")
@tenant_option
@click.pass_obj
def update(
    state: CliState,
    name: str,
    role: str | None,
    disabled: bool | None,
    password_stdin: bool,
    password_prompt: bool,
    tenant: str | None,
) -> None:
    """Change a user's role, password or disabled flag."""
    if password_stdin and password_prompt:
        raise click.UsageError("use either --password-stdin or --password-prompt, not both")
    password = None
    if password_stdin or password_prompt:
        password = read_secret(None, password_stdin, "New password", flag="--password")
    if role is None and disabled is None and password is None:
        raise click.UsageError("nothing to update: give --role, --disable/--enable or a new password")
    updated = state.client().users.update(
        name, password=password, role=role, disabled=disabled, tenant=tenant
    )
    emit(state.output, updated)


@user.command("delete")
@click.argument("name")
@tenant_option
@click.pass_obj
def delete(state: CliState, name: str, tenant: str | None) -> None:
    """Delete a user."""
    state.client().users.delete(name, tenant=tenant)
    emit_done(state.output, f"Deleted user {name}.", {"user": name, "deleted": True})


@click.group(cls=CloudGroup)
def role() -> None:
    """Roles (admin, developer, viewer)."""


@role.command("list")
@stale_option
@click.pass_obj
def role_list(state: CliState, stale: bool) -> None:
    """List the roles."""
    result = state.client().roles.list(stale=stale)
    if state.output == "table":
        print_table(result.get("items") or [], ("name", "description"))
    else:
        emit(state.output, result)


@role.command("assign")
@click.argument("name", metavar="USER")
@click.argument("role_name", metavar="ROLE")
@tenant_option
@click.pass_obj
def assign(state: CliState, name: str, role_name: str, tenant: str | None) -> None:
    """Give USER the role ROLE (a user has one role in their tenant)."""
    emit(state.output, state.client().users.update(name, role=role_name, tenant=tenant))
