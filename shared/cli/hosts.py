"""`cloud host ...`: compute hosts and their join tokens (cluster admin)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option
from shared.cli.output import emit, emit_done, emit_page, print_object, print_table

COLUMNS = ("name", "id", "zone", "state", "flags", "vcpu", "memory_mb", "disk_gb", "instances", "driver")
HOST_FIELDS = ("id", "name", "zone", "state", "state_reason", "enabled", "draining", "driver", "kinds", "traits",
               "agent_version", "seconds_since_heartbeat", "created_at", "state_changed_at")
HOST_INSTANCE_COLUMNS = ("name", "id", "tenant_id", "status", "generation", "vcpus", "memory_mb", "disk_gb")
RESOURCES = ("vcpu", "memory_mb", "disk_gb")
STATES = ("new", "up", "down", "fencing")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RE = re.compile(r"^(\d+)([smhd]?)$")


class Duration(click.ParamType):
    """``90``, ``90s``, ``15m``, ``1h`` or ``7d`` as a number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = DURATION_RE.match(str(value).strip().lower())
        if match is None:
            self.fail(f"{value!r} is not a duration like 90s, 15m, 1h or 7d", param, ctx)
        return int(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def _flags(host: Mapping[str, Any]) -> str:
    flags = [name for name, on in (("disabled", not host.get("enabled", True)),
                                   ("draining", bool(host.get("draining")))) if on]
    return ",".join(flags) or "-"


def _usage(host: Mapping[str, Any], resource: str) -> str:
    inventory = (host.get("inventory") or {}).get(resource)
    used = (host.get("allocated") or {}).get(resource, 0)
    if not inventory:
        return f"{used}/-"
    total = int(inventory.get("total", 0)) - int(inventory.get("reserved", 0))
    ratio = float(inventory.get("allocation_ratio", 1.0))
    capacity = int(total * ratio)
    return f"{used}/{capacity}"


def row(host: Mapping[str, Any]) -> dict[str, Any]:
    """A host as a table row: flags and ``used/capacity`` per resource."""
    out = dict(host)
    out["flags"] = _flags(host)
    out["instances"] = host.get("instance_count")
    for resource in RESOURCES:
        out[resource] = _usage(host, resource)
    return out


@click.group(cls=CloudGroup)
def host() -> None:
    """Compute hosts (cluster admin)."""


@host.group("token", cls=CloudGroup)
def token() -> None:
    """One-time join tokens for new hosts."""


@token.command("create")
@click.option("--expires", type=Duration(), default="1h", show_default=True,
              help="Validity: seconds, or with a unit (15m, 1h, 7d); 1m..30d.")
@click.option("--zone", help="Availability zone of the host that joins with it.")
@click.pass_obj
def token_create(state: CliState, expires: int, zone: str | None) -> None:
    """Create a join token; give it to `thecloud-agent join --token ...` on the new host."""
    created = state.client().hosts.create_token(expires_in_seconds=expires, zone=zone)
    emit(state.output, created)
    if state.output == "table":
        click.echo("The token works once; store it now, it cannot be shown again.", err=True)


@host.command("list")
@click.option("--state", "host_state", type=click.Choice(STATES), help="Only hosts in this state.")
@list_options(tenant_scoped=False)
@click.pass_obj
def list_(state: CliState, list_args: ListArgs, host_state: str | None) -> None:
    """List hosts with their allocations (used/capacity)."""
    page = list_args.fetch(state.client().hosts, state=host_state)
    if state.output == "table":
        page = {**page, "items": [row(h) for h in page.get("items") or []]}
    emit_page(state.output, page, COLUMNS)


@host.command("show")
@click.argument("ident", metavar="HOST")
@stale_option
@click.pass_obj
def show(state: CliState, ident: str, stale: bool) -> None:
    """Show a host: state, capacity, allocations and its instances."""
    result = state.client().hosts.get(ident, stale=stale)
    if state.output != "table":
        emit(state.output, result)
        return
    details = row(result)
    print_object(details, [*HOST_FIELDS, *RESOURCES, "instances"])
    instances = result.get("instances") or []
    if instances:
        click.echo()
        print_table(instances, HOST_INSTANCE_COLUMNS)


def _flag_command(verb: str, done: str, help_text: str) -> None:
    @host.command(verb, help=help_text)
    @click.argument("ident", metavar="HOST")
    @click.pass_obj
    def command(state: CliState, ident: str) -> None:
        result = getattr(state.client().hosts, verb)(ident)
        emit_done(state.output, f"Host {result.get('name', ident)} {done}.", result)


_flag_command("drain", "is draining: its instances move elsewhere",
              "Move a host's instances elsewhere and accept nothing new.")
_flag_command("undrain", "accepts new instances again", "Stop draining a host.")
_flag_command("disable", "is disabled: it accepts nothing new", "Accept nothing new on a host (instances stay).")
_flag_command("enable", "is enabled", "Enable a disabled host.")


@host.command("delete")
@click.argument("ident", metavar="HOST")
@click.pass_obj
def delete(state: CliState, ident: str) -> None:
    """Remove a host that is down (or never came up) and has no instances."""
    state.client().hosts.delete(ident)
    emit_done(state.output, f"Deleted host {ident}.", {"host": ident, "deleted": True})
