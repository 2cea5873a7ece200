"""`cloud vpc|subnet|sg|eip|peering ...`: networking (a thin layer over shared.sdk.networks)."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_done, emit_page, print_object, print_table

VPC_COLUMNS = ("name", "id", "cidr", "vni", "subnets", "ports", "created_at")
SUBNET_COLUMNS = ("name", "id", "vpc", "cidr", "gateway", "nat_outbound", "used_addresses", "free_addresses")
SG_COLUMNS = ("name", "id", "vpc", "default", "ports", "description")
RULE_COLUMNS = ("id", "direction", "protocol", "port_min", "port_max", "remote_cidr", "remote_group")
EIP_COLUMNS = ("address", "id", "instance", "port_id", "created_at")
PEERING_COLUMNS = ("id", "vpc", "peer_vpc", "created_at")
vpc_option = click.option("--vpc", help="The VPC (name or id) the group is in, when two VPCs share the name.")


# -- vpc ----------------------------------------------------------------------------------------------------------
@click.group(cls=CloudGroup)
def vpc() -> None:
    """VPCs: isolated networks, each with its own CIDR, VNI and default security group."""


@vpc.command("create")
@click.argument("name")
@click.option("--cidr", required=True, help="IPv4 network, /8 to /28 (e.g. 10.0.0.0/16).")
@tenant_option
@click.pass_obj
def vpc_create(state: CliState, name: str, cidr: str, tenant: str | None) -> None:
    """Create a VPC: cloud vpc create prod --cidr 10.1.0.0/16"""
    emit(state.output, state.client().vpcs.create(name, cidr, tenant=tenant))


@vpc.command("list")
@list_options()
@click.pass_obj
def vpc_list(state: CliState, list_args: ListArgs) -> None:
    """List VPCs."""
    emit_page(state.output, list_args.fetch(state.client().vpcs), VPC_COLUMNS)


@vpc.command("show")
@click.argument("ident", metavar="VPC")
@stale_option
@tenant_option
@click.pass_obj
def vpc_show(state: CliState, ident: str, stale: bool, tenant: str | None) -> None:
    """Show a VPC (by name or id)."""
    emit(state.output, state.client().vpcs.get(ident, stale=stale, tenant=tenant))


@vpc.command("delete")
@click.argument("ident", metavar="VPC")
@tenant_option
@click.pass_obj
def vpc_delete(state: CliState, ident: str, tenant: str | None) -> None:
    """Delete a VPC without ports or peerings (its subnets and groups go with it)."""
    state.client().vpcs.delete(ident, tenant=tenant)
    emit_done(state.output, f"Deleted vpc {ident}.", {"vpc": ident, "deleted": True})


# -- subnet -------------------------------------------------------------------------------------------------------
@click.group(cls=CloudGroup)
def subnet() -> None:
    """Subnets of a VPC; instances get their addresses from one."""


@subnet.command("create")
@click.argument("name")
@click.option("--vpc", "vpc_ref", required=True, help="The VPC (name or id).")
@click.option("--cidr", required=True, help="Inside the VPC's CIDR, overlapping no other subnet of it.")
@click.option("--nat", is_flag=True, help="Let its instances reach outside addresses through the host.")
@tenant_option
@click.pass_obj
def subnet_create(state: CliState, name: str, vpc_ref: str, cidr: str, nat: bool, tenant: str | None) -> None:
    """Create a subnet: cloud subnet create web --vpc prod --cidr 10.1.1.0/24 --nat"""
    emit(state.output, state.client().subnets.create(name, vpc_ref, cidr, nat_outbound=nat, tenant=tenant))


@subnet.command("list")
@click.option("--vpc", "vpc_ref", help="Only this VPC's subnets.")
@list_options()
@click.pass_obj
def subnet_list(state: CliState, list_args: ListArgs, vpc_ref: str | None) -> None:
    """List subnets."""
    emit_page(state.output, list_args.fetch(state.client().subnets, vpc=vpc_ref), SUBNET_COLUMNS)


@subnet.command("show")
@click.argument("ident", metavar="SUBNET")
@stale_option
@tenant_option
@click.pass_obj
def subnet_show(state: CliState, ident: str, stale: bool, tenant: str | None) -> None:
    """Show a subnet (by name or id)."""
    emit(state.output, state.client().subnets.get(ident, stale=stale, tenant=tenant))


@subnet.command("delete")
@click.argument("ident", metavar="SUBNET")
@tenant_option
@click.pass_obj
def subnet_delete(state: CliState, ident: str, tenant: str | None) -> None:
    """Delete a subnet without ports."""
    state.client().subnets.delete(ident, tenant=tenant)
    emit_done(state.output, f"Deleted subnet {ident}.", {"subnet": ident, "deleted": True})


# -- sg -----------------------------------------------------------------------------------------------------------
@click.group(cls=CloudGroup)
def sg() -> None:
    """Security groups and their rules."""


@sg.command("create")
@click.argument("name")
@click.option("--vpc", "vpc_ref", required=True, help="The VPC (name or id).")
@click.option("--description")
@tenant_option
@click.pass_obj
def sg_create(state: CliState, name: str, vpc_ref: str, description: str | None, tenant: str | None) -> None:
    """Create a security group in a VPC."""
    emit(state.output, state.client().security_groups.create(name, vpc_ref, description=description, tenant=tenant))


@sg.command("list")
@click.option("--vpc", "vpc_ref", help="Only this VPC's groups.")
@list_options()
@click.pass_obj
def sg_list(state: CliState, list_args: ListArgs, vpc_ref: str | None) -> None:
    """List security groups."""
    emit_page(state.output, list_args.fetch(state.client().security_groups, vpc=vpc_ref), SG_COLUMNS)


@sg.command("show")
@click.argument("ident", metavar="GROUP")
@vpc_option
@stale_option
@tenant_option
@click.pass_obj
def sg_show(state: CliState, ident: str, vpc: str | None, stale: bool, tenant: str | None) -> None:
    """Show a security group with its rules."""
    result = state.client().security_groups.get(ident, stale=stale, tenant=tenant, vpc=vpc)
    if state.output != "table":
        emit(state.output, result)
        return
    print_object(result, ("id", "name", "vpc", "vpc_id", "default", "description", "ports", "created_at"))
    if result.get("rules"):
        click.echo()
        print_table(result["rules"], RULE_COLUMNS)


@sg.command("delete")
@click.argument("ident", metavar="GROUP")
@vpc_option
@tenant_option
@click.pass_obj
def sg_delete(state: CliState, ident: str, vpc: str | None, tenant: str | None) -> None:
    """Delete a security group no port uses and no rule names."""
    state.client().security_groups.delete(ident, tenant=tenant, vpc=vpc)
    emit_done(state.output, f"Deleted security group {ident}.", {"security_group": ident, "deleted": True})


@sg.command("rule-add")
@click.argument("ident", metavar="GROUP")
@click.option("--direction", type=click.Choice(["ingress", "egress"]), default="ingress", show_default=True)
@click.option("--protocol", type=click.Choice(["any", "tcp", "udp", "icmp"]), default="any", show_default=True)
@click.option("--port", "ports", metavar="PORT[-PORT]", help="A port or range (tcp/udp).")
@click.option("--remote-cidr", help="Only from/to this network (default: any address).")
@click.option("--remote-group", help="Only from/to members of this group of the same VPC.")
@vpc_option
@tenant_option
@click.pass_obj
def sg_rule_add(state: CliState, ident: str, direction: str, protocol: str, ports: str | None,
                remote_cidr: str | None, remote_group: str | None, vpc: str | None, tenant: str | None) -> None:
    """Add a rule: cloud sg rule-add web --protocol tcp --port 80 --remote-cidr 0.0.0.0/0"""
    port_min = port_max = None
    if ports is not None:
        low, _, high = ports.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise click.BadParameter(f"{ports!r} is not PORT or PORT-PORT", param_hint="--port")
        port_min, port_max = int(low), int(high or low)
    rule = state.client().security_groups.add_rule(
        ident, direction, protocol=protocol, port_min=port_min, port_max=port_max, remote_cidr=remote_cidr,
        remote_group=remote_group, vpc=vpc, tenant=tenant)
    emit(state.output, rule)


@sg.command("rule-delete")
@click.argument("ident", metavar="GROUP")
@click.argument("rule_id")
@vpc_option
@tenant_option
@click.pass_obj
def sg_rule_delete(state: CliState, ident: str, rule_id: str, vpc: str | None, tenant: str | None) -> None:
    """Delete a rule of a group."""
    state.client().security_groups.delete_rule(ident, rule_id, vpc=vpc, tenant=tenant)
    emit_done(state.output, f"Deleted rule {rule_id}.", {"rule": rule_id, "deleted": True})


# -- eip ----------------------------------------------------------------------------------------------------------
@click.group(cls=CloudGroup)
def eip() -> None:
    """Elastic IPs: public addresses associated with an instance."""


@eip.command("allocate")
@tenant_option
@click.pass_obj
def eip_allocate(state: CliState, tenant: str | None) -> None:
    """Allocate an address from the public pool."""
    emit(state.output, state.client().elastic_ips.allocate(tenant=tenant))


@eip.command("list")
@list_options()
@click.pass_obj
def eip_list(state: CliState, list_args: ListArgs) -> None:
    """List elastic IPs."""
    emit_page(state.output, list_args.fetch(state.client().elastic_ips), EIP_COLUMNS)


@eip.command("associate")
@click.argument("ident", metavar="EIP")
@click.argument("instance")
@tenant_option
@click.pass_obj
def eip_associate(state: CliState, ident: str, instance: str, tenant: str | None) -> None:
    """Associate an elastic IP (address or id) with an instance."""
    emit(state.output, state.client().elastic_ips.associate(ident, instance, tenant=tenant))


@eip.command("disassociate")
@click.argument("ident", metavar="EIP")
@tenant_option
@click.pass_obj
def eip_disassociate(state: CliState, ident: str, tenant: str | None) -> None:
    """Disassociate an elastic IP from its instance."""
    emit(state.output, state.client().elastic_ips.disassociate(ident, tenant=tenant))


@eip.command("release")
@click.argument("ident", metavar="EIP")
@tenant_option
@click.pass_obj
def eip_release(state: CliState, ident: str, tenant: str | None) -> None:
    """Give a (disassociated) elastic IP back to the pool."""
    state.client().elastic_ips.release(ident, tenant=tenant)
    emit_done(state.output, f"Released elastic ip {ident}.", {"elastic_ip": ident, "released": True})


# -- peering ------------------------------------------------------------------------------------------------------
@click.group(cls=CloudGroup)
def peering() -> None:
    """VPC peerings."""


@peering.command("create")
@click.argument("vpc_ref", metavar="VPC")
@click.argument("peer_vpc", metavar="PEER_VPC")
@tenant_option
@click.pass_obj
def peering_create(state: CliState, vpc_ref: str, peer_vpc: str, tenant: str | None) -> None:
    """Peer two VPCs of the tenant (their CIDRs must not overlap)."""
    emit(state.output, state.client().peerings.create(vpc_ref, peer_vpc, tenant=tenant))


@peering.command("list")
@list_options()
@click.pass_obj
def peering_list(state: CliState, list_args: ListArgs) -> None:
    """List VPC peerings."""
    emit_page(state.output, list_args.fetch(state.client().peerings), PEERING_COLUMNS)


@peering.command("delete")
@click.argument("ident", metavar="PEERING")
@tenant_option
@click.pass_obj
def peering_delete(state: CliState, ident: str, tenant: str | None) -> None:
    """Delete a VPC peering."""
    state.client().peerings.delete(ident, tenant=tenant)
    emit_done(state.output, f"Deleted peering {ident}.", {"peering": ident, "deleted": True})
