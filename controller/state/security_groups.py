"""Security groups and their rules, per VPC.

Every VPC has a group named ``default``: ingress from members of the same group, all egress; what no rule
allows is denied (ingress). A rule's ``remote_group`` must be a group of the same VPC. A group is deleted only
when no port uses it and no other group's rule names it.
"""

from __future__ import annotations

from typing import Any

from controller.state import ipam, netindex
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, invalid, not_found
from controller.state.registry import handles

DIRECTIONS = ("ingress", "egress")
PROTOCOLS = ("any", "tcp", "udp", "icmp")
RULE_FIELDS = ("direction", "protocol", "port_min", "port_max", "remote_cidr", "remote_group")
MAX_RULES = 200


def get_group(data: StateData, tenant_id: str, sg_id: str) -> dict[str, Any]:
    sg = data.security_groups.get(sg_id)
    if sg is None or sg["tenant_id"] != tenant_id:
        raise not_found("security group", sg_id)
    return sg


def normalize_rule(data: StateData, sg: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The rule as stored (port_max defaults to port_min); 422 with the reason for anything invalid."""
    rule = {k: raw.get(k) for k in RULE_FIELDS}
    rule["protocol"] = rule["protocol"] or "any"
    if rule["direction"] not in DIRECTIONS:
        raise invalid(f"direction must be one of {', '.join(DIRECTIONS)}")
    if rule["protocol"] not in PROTOCOLS:
        raise invalid(f"protocol must be one of {', '.join(PROTOCOLS)}")
    if rule["port_min"] is None and rule["port_max"] is not None:
        raise invalid("port_max needs port_min")
    if rule["port_min"] is not None:
        if rule["protocol"] not in ("tcp", "udp"):
            raise invalid(f"ports apply to tcp and udp only, not to protocol {rule['protocol']}")
        if rule["port_max"] is None:
            rule["port_max"] = rule["port_min"]
        for key in ("port_min", "port_max"):
            value = rule[key]
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise invalid(f"{key} must be between 1 and 65535")
        if rule["port_min"] > rule["port_max"]:
            raise invalid(f"port_min {rule['port_min']} is above port_max {rule['port_max']}")
    if rule["remote_cidr"] is not None and rule["remote_group"] is not None:
        raise invalid("give remote_cidr or remote_group, not both")
    if rule["remote_cidr"] is not None:
        rule["remote_cidr"] = str(ipam.parse_remote_cidr(rule["remote_cidr"]))
    if rule["remote_group"] is not None:
        remote = data.security_groups.get(rule["remote_group"])
        if remote is None or remote["tenant_id"] != sg["tenant_id"]:
            raise not_found("security group", rule["remote_group"])
        if remote["vpc_id"] != sg["vpc_id"]:
            raise invalid(f"remote_group {remote['name']} is in another vpc; a rule may only name groups of its "
                          "own vpc")
    return rule


def _new_group(data: StateData, vpc: dict[str, Any], sg_id: str, name: str, description: str,
               ctx: CommandContext) -> dict[str, Any]:
    if sg_id in data.security_groups:
        raise conflict(f"security group id {sg_id!r} already exists")
    sg = {"id": sg_id, "name": name, "tenant_id": vpc["tenant_id"], "vpc_id": vpc["id"], "description": description,
          "rules": [], "default": False, "created_at": ctx["time"]}
    data.security_groups[sg_id] = sg
    vpc["sg_ids"].append(sg_id)
    netindex.touch_vpc(data, vpc["id"])
    return sg


def insert_default(data: StateData, vpc: dict[str, Any], args: dict[str, Any], ctx: CommandContext) -> None:
    """``args``: ``{"id", "rule_ids": [ingress rule id, egress rule id]}``."""
    sg = _new_group(data, vpc, args["id"], "default", "the vpc's default group", ctx)
    sg["default"] = True
    ingress, egress = args["rule_ids"]
    sg["rules"] = [
        {"id": ingress, "direction": "ingress", "protocol": "any", "port_min": None, "port_max": None,
         "remote_cidr": None, "remote_group": sg["id"]},
        {"id": egress, "direction": "egress", "protocol": "any", "port_min": None, "port_max": None,
         "remote_cidr": None, "remote_group": None},
    ]


@handles("sg.create")
def create_group(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    vpc = data.vpcs.get(args["vpc_id"])
    if vpc is None or vpc["tenant_id"] != args["tenant_id"]:
        raise not_found("vpc", args["vpc_id"])
    if any(data.security_groups[s]["name"] == args["name"] for s in vpc["sg_ids"]):
        raise conflict(f"security group {args['name']!r} already exists in vpc {vpc['name']}")
    return _new_group(data, vpc, args["id"], args["name"], args.get("description", ""), ctx)


def referencing(data: StateData, sg: dict[str, Any]) -> list[str]:
    """Names of the other groups of the VPC whose rules name ``sg``."""
    vpc = data.vpcs[sg["vpc_id"]]
    return [data.security_groups[s]["name"] for s in vpc["sg_ids"]
            if s != sg["id"] and any(r["remote_group"] == sg["id"] for r in data.security_groups[s]["rules"])]


@handles("sg.delete")
def delete_group(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    sg = get_group(data, args["tenant_id"], args["id"])
    if sg["default"]:
        raise conflict(f"security group {sg['name']} is the vpc's default group; it goes with the vpc")
    users = data.sg_ports.get(sg["id"], {})
    if users:
        raise conflict(f"security group {sg['name']} is in use by {len(users)} port(s); delete or change those "
                       "instances first")
    named_by = referencing(data, sg)
    if named_by:
        raise conflict(f"security group {sg['name']} is named by rules of group(s) {', '.join(named_by)}; "
                       "delete those rules first")
    drop(data, sg)


def drop(data: StateData, sg: dict[str, Any]) -> None:
    data.security_groups.pop(sg["id"], None)
    data.sg_ports.pop(sg["id"], None)
    vpc = data.vpcs.get(sg["vpc_id"])
    if vpc is not None and sg["id"] in vpc["sg_ids"]:
        vpc["sg_ids"].remove(sg["id"])
        netindex.touch_vpc(data, vpc["id"])


@handles("sg.rule.add")
def add_rule(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    sg = get_group(data, args["tenant_id"], args["sg_id"])
    rule = normalize_rule(data, sg, args["rule"])
    if any(r["id"] == args["rule_id"] for r in sg["rules"]):
        raise conflict(f"rule id {args['rule_id']!r} already exists")
    if any({k: r[k] for k in RULE_FIELDS} == rule for r in sg["rules"]):
        raise conflict(f"security group {sg['name']} already has this rule")
    if len(sg["rules"]) >= MAX_RULES:
        raise conflict(f"security group {sg['name']} has {MAX_RULES} rules, the most a group may have")
    rule = {"id": args["rule_id"], **rule}
    sg["rules"].append(rule)
    netindex.touch_vpc(data, sg["vpc_id"])
    return {"group": sg, "rule": rule}


@handles("sg.rule.delete")
def delete_rule(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    sg = get_group(data, args["tenant_id"], args["sg_id"])
    kept = [r for r in sg["rules"] if r["id"] != args["rule_id"]]
    if len(kept) == len(sg["rules"]):
        raise not_found("rule", args["rule_id"])
    sg["rules"] = kept
    netindex.touch_vpc(data, sg["vpc_id"])
    return sg
