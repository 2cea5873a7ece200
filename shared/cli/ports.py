"""`cloud port ...`: instance ports (NICs) and their security groups (a thin layer over shared.sdk.networks)."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_page

PORT_COLUMNS = ("id", "instance", "vpc", "subnet", "ip", "mac", "security_groups", "elastic_ip", "host", "state")


@click.group(cls=CloudGroup)
def port() -> None:
    """Ports: instance NICs, made and removed with their instances."""


@port.command("list")
@click.option("--vpc", "vpc_ref", help="Only this VPC's ports.")
@click.option("--subnet", "subnet_ref", help="Only this subnet's ports.")
@list_options()
@click.pass_obj
def port_list(state: CliState, list_args: ListArgs, vpc_ref: str | None, subnet_ref: str | None) -> None:
    """List ports."""
    emit_page(state.output, list_args.fetch(state.client().ports, vpc=vpc_ref, subnet=subnet_ref), PORT_COLUMNS)


@port.command("show")
@click.argument("port_id", metavar="PORT")
@stale_option
@tenant_option
@click.pass_obj
def port_show(state: CliState, port_id: str, stale: bool, tenant: str | None) -> None:
    """Show a port (by id)."""
    emit(state.output, state.client().ports.get(port_id, stale=stale, tenant=tenant))


@port.command("update")
@click.argument("port_id", metavar="PORT")
@click.option("--security-group", "groups", multiple=True, required=True,
              help="A group of the port's VPC (name or id); repeat for several. They replace the current ones.")
@tenant_option
@click.pass_obj
def port_update(state: CliState, port_id: str, groups: tuple[str, ...], tenant: str | None) -> None:
    """Change a port's security groups: cloud port update port-1a2b --security-group web --security-group ssh"""
    emit(state.output, state.client().ports.update(port_id, security_groups=list(groups), tenant=tenant))
