"""`cloud quota show|set`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shared.cli.common import CliState, CloudGroup, stale_option
from shared.cli.output import emit, print_table

QUOTA_NAMES = ("instances", "vcpus", "memory_mb", "volumes", "volume_gb", "buckets", "public_ips", "secrets")


def _show(fmt: str, quota: Mapping[str, Any]) -> None:
    if fmt != "table":
        emit(fmt, dict(quota))
        return
    limits = quota.get("limits") or {}
    usage = quota.get("usage") or {}
    names = [*QUOTA_NAMES, *sorted((limits.keys() | usage.keys()) - set(QUOTA_NAMES))]
    rows = [
        {
            "name": name,
            "limit": "unlimited" if limits.get(name) == -1 else limits.get(name),
            "usage": usage.get(name),
        }
        for name in names
        if name in limits or name in usage
    ]
    click.echo(f"Tenant: {quota.get('tenant_id')}")
    print_table(rows, ("name", "limit", "usage"))


@click.group(cls=CloudGroup)
def quota() -> None:
    """Quotas."""


@quota.command("show")
@click.option("--tenant", help="Show this tenant's quota (cluster admin; default: your own).")
@stale_option
@click.pass_obj
def show(state: CliState, tenant: str | None, stale: bool) -> None:
    """Show limits and usage."""
    client = state.client()
    result = client.tenants.get_quota(tenant, stale=stale) if tenant else client.quota.get(stale=stale)
    _show(state.output, result)


def _limit_options(func: Any) -> Any:
    for name in reversed(QUOTA_NAMES):
        func = click.option(
            f"--{name.replace('_', '-')}", name, type=click.IntRange(min=-1), help=f"Limit of {name}."
        )(func)
    return func


@quota.command("set")
@click.option("--tenant", required=True, help="Tenant to change (id or name).")
@_limit_options
@click.pass_obj
def set_(state: CliState, tenant: str, **limits: int | None) -> None:
    """Set one or more limits of a tenant (-1 = unlimited; cluster admin)."""
    chosen = {name: value for name, value in limits.items() if value is not None}
    if not chosen:
        options = ", ".join(f"--{name.replace('_', '-')}" for name in QUOTA_NAMES)
        raise click.UsageError(f"give at least one limit: {options}")
    _show(state.output, state.client().tenants.set_quota(tenant, chosen))
