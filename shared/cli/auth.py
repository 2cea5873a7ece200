"""`cloud login`, `cloud logout` and `cloud whoami`."""

from __future__ import annotations

from typing import Any

import click

from shared.cli.common import CliState, CloudCommand, read_secret, stale_option
from shared.cli.output import emit, emit_done
from shared.sdk.config import Settings, clear_credentials, config_path, save_profile


def _identity(who: dict[str, Any]) -> dict[str, Any]:
    user = who.get("user") or {}
    tenant = who.get("tenant") or {}
    return {
        "user": user.get("name"),
        "user_id": user.get("id"),
        "tenant": tenant.get("name"),
        "tenant_id": tenant.get("id"),
        "role": who.get("role"),
    }


@click.command(cls=CloudCommand)
@click.option("--url", help="Controller URL to log in to (default: the profile's, or the global --url).")
@click.option("--username", "-u", help="User name (prompted if needed).")
@click.option("--password", help="Password (prompted, hidden, if not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--api-key", help="Store this API key instead of logging in with a password.")
@click.pass_obj
def login(
    state: CliState,
    url: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    api_key: str | None,
) -> None:
    """Log in and save the credentials in the current profile (or --profile).

    With --api-key the key is checked and stored; otherwise a password login stores a JWT.
    """
    base = state.settings(must_exist=False)
    target = url or state.url or base.url
    client = state.client_factory(Settings(url=target, profile=base.profile))
    try:
        expires_at = None
        if api_key:
            client.api_key = api_key
            who = client.auth.whoami()
            path = save_profile(base.profile, target, api_key=api_key)
        else:
            name = username or click.prompt("Username")
            if password is None or password_stdin:
                password = read_secret(password, password_stdin, "Password", confirm=False, flag="--password")
            result = client.auth.login(name, password)
            expires_at = result.get("expires_at")
            who = client.auth.whoami()
            path = save_profile(base.profile, target, token=result["token"])
    finally:
        client.close()
    info = {"profile": base.profile, "url": target, **_identity(who), "expires_at": expires_at}
    message = (
        f"Logged in to {target} as {info['user']} (tenant {info['tenant']}, role {info['role']}); "
        f"profile {base.profile!r} saved in {path}."
    )
    emit_done(state.output, message, info)


@click.command(cls=CloudCommand)
@click.pass_obj
def logout(state: CliState) -> None:
    """Forget the credentials of the current profile (its URL is kept)."""
    profile = state.settings(must_exist=False).profile
    removed = clear_credentials(profile, config_path())
    message = f"Logged out of profile {profile!r}." if removed else f"Profile {profile!r} had no credentials."
    emit_done(state.output, message, {"profile": profile, "logged_out": removed})


@click.command(cls=CloudCommand)
@stale_option
@click.pass_obj
def whoami(state: CliState, stale: bool) -> None:
    """Show the caller's user, tenant and role."""
    who = state.client().auth.whoami(stale=stale)
    if state.output == "table":
        emit("table", _identity(who))
    else:
        emit(state.output, who)
