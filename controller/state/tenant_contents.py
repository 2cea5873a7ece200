"""What a tenant still holds, counted by ``tenant.delete`` inside apply (so a concurrent create cannot slip in
between the check and the delete), and what goes with the tenant.

Counts come from the per-tenant name indexes (instances, VPCs, subnets, volumes, snapshots, secrets) and the
tenant's VPCs (their groups and peerings); the tables without a per-tenant index (users, elastic IPs, buckets,
backups, S3 keys) take one pass each. Not counted, because they go with the tenant: the auto-created default
VPC when nothing else is left (with its subnet ``default`` and default group; its VNI is released), the
tenant's internal S3 transfer key (no user can delete it) and its (then empty) server groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.state import networks
from controller.state.command import CommandContext
from controller.state.data import StateData

# kind -> (singular, plural), in the order the refusal names them
KINDS: dict[str, tuple[str, str]] = {
    "users": ("user", "users"),
    "secrets": ("secret", "secrets"),
    "instances": ("instance", "instances"),
    "vpcs": ("VPC", "VPCs"),
    "subnets": ("subnet", "subnets"),
    "security_groups": ("security group", "security groups"),
    "peerings": ("peering", "peerings"),
    "elastic_ips": ("elastic IP", "elastic IPs"),
    "volumes": ("volume", "volumes"),
    "snapshots": ("snapshot", "snapshots"),
    "buckets": ("bucket", "buckets"),
    "backups": ("backup", "backups"),
    "s3_keys": ("S3 access key", "S3 access keys"),
}


@dataclass
class Contents:
    """Counts per kind of KINDS (and how many of those are already being deleted), plus what goes along."""

    counts: dict[str, int] = field(default_factory=dict)
    going: dict[str, int] = field(default_factory=dict)
    default_vpc_id: str | None = None
    internal_keys: list[str] = field(default_factory=list)

    def blocking(self) -> bool:
        return any(self.counts.values())

    def describe(self) -> str:
        """``2 instances (1 being deleted), 1 VPC, 1 elastic IP``."""
        parts = []
        for kind, (one, many) in KINDS.items():
            n = self.counts.get(kind, 0)
            if not n:
                continue
            part = f"{n} {one if n == 1 else many}"
            if self.going.get(kind):
                part += f" ({self.going[kind]} being deleted)"
            parts.append(part)
        return ", ".join(parts)


def _default_vpc(data: StateData, tenant_id: str) -> dict[str, Any] | None:
    """The auto-created default VPC (name and CIDR as instance creation makes it), if the tenant has it."""
    vpc = data.vpcs.get(data.vpc_names.get(tenant_id, {}).get(networks.DEFAULT_NAME, ""))
    if vpc is None or vpc["cidr"] != networks.DEFAULT_VPC_CIDR:
        return None
    return vpc


def _network_counts(data: StateData, tenant_id: str, out: Contents) -> None:
    default = _default_vpc(data, tenant_id)
    vpc_ids = [v for v in data.vpc_names.get(tenant_id, {}).values() if v in data.vpcs]
    default_subnet = None
    if default is not None:
        subnet = data.subnets.get(data.subnet_names.get(tenant_id, {}).get(networks.DEFAULT_NAME, ""))
        if subnet is not None and subnet["vpc_id"] == default["id"]:
            default_subnet = subnet["id"]
    subnets = [s for s in data.subnet_names.get(tenant_id, {}).values() if s != default_subnet]
    groups = 0
    peerings: set[str] = set()
    for vpc_id in vpc_ids:
        vpc = data.vpcs[vpc_id]
        groups += sum(1 for sg_id in vpc["sg_ids"] if sg_id != vpc["default_sg_id"])
        peerings.update(vpc["peering_ids"])
    out.counts["vpcs"] = len(vpc_ids) - (default is not None)
    out.counts["subnets"] = len(subnets)
    out.counts["security_groups"] = groups
    out.counts["peerings"] = len(peerings)
    if default is not None and not data.vpc_ports.get(default["id"]):
        out.default_vpc_id = default["id"]
    elif default is not None and not out.counts.get("instances"):  # ports but no instance: never purge then
        out.counts["vpcs"] += 1


def _by_names(data: StateData, names: dict[str, dict[str, str]], table: dict[str, dict[str, Any]],
              tenant_id: str, gone: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    """Count of the tenant's records in ``table`` (via its name index) and how many of them ``gone(record)``."""
    ids = [i for i in names.get(tenant_id, {}).values() if i in table]
    return len(ids), sum(1 for i in ids if gone(table[i]))


def contents(data: StateData, tenant_id: str) -> Contents:
    out = Contents()
    out.counts["users"] = sum(1 for u in data.users.values() if u["tenant_id"] == tenant_id)
    out.counts["secrets"] = len(data.secrets.get(tenant_id, {}))
    out.counts["instances"], out.going["instances"] = _by_names(
        data, data.instance_names, data.instances, tenant_id, lambda i: i["desired"] == "deleted")
    _network_counts(data, tenant_id, out)
    out.counts["elastic_ips"] = sum(1 for e in data.elastic_ips.values() if e["tenant_id"] == tenant_id)
    out.counts["volumes"], out.going["volumes"] = _by_names(
        data, data.volume_names, data.volumes, tenant_id, lambda v: v["wanted"] == "deleted")
    out.counts["snapshots"], out.going["snapshots"] = _by_names(
        data, data.snapshot_names, data.snapshots, tenant_id, lambda s: s["wanted"] == "deleted")
    out.counts["buckets"] = sum(1 for b in data.buckets.values() if b["tenant_id"] == tenant_id)
    out.counts["backups"] = sum(1 for b in data.backups.values() if b["tenant_id"] == tenant_id)
    keys = [c for c in data.s3_credentials.values() if c["tenant_id"] == tenant_id]
    out.internal_keys = [c["access_key_id"] for c in keys if c.get("internal")]
    out.counts["s3_keys"] = len(keys) - len(out.internal_keys)
    return out


def purge_rest(data: StateData, tenant_id: str, found: Contents, ctx: CommandContext) -> None:
    """Drops what goes with the tenant (``found`` must not be ``blocking``) and the tenant's empty indexes."""
    if found.default_vpc_id is not None:
        networks.delete_vpc(data, {"tenant_id": tenant_id, "id": found.default_vpc_id}, ctx)
    for key_id in found.internal_keys:
        data.s3_credentials.pop(key_id, None)
    for index in (data.instance_names, data.vpc_names, data.subnet_names, data.volume_names, data.snapshot_names,
                  data.server_groups, data.secrets, data.quotas, data.usage):
        index.pop(tenant_id, None)
