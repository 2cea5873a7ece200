"""The replicated data: plain JSON-compatible dicts, so snapshots and backups are simple and stable."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

FORMAT_VERSION = 1
AUDIT_RETENTION = 100_000


@dataclass
class StateData:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenant_names: dict[str, str] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_names: dict[str, str] = field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    # tenant id -> secret name -> secret record (with its versions)
    secrets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    audit_seq: int = 0
    idempotency: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    # compute: join tokens, hosts (resource providers), instances with their placements, server groups
    join_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_names: dict[str, str] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    # host id -> ids of the instances placed on it: an index kept by placements.claim/release
    host_instances: dict[str, list[str]] = field(default_factory=dict)
    # ids of the instances placed on no host (pending, or stopped/error after their host was lost), an ordered
    # set kept by placements.claim/release and instances.purge, so the pending duty does not scan every instance
    unplaced_instances: dict[str, None] = field(default_factory=dict)
    # tenant id -> instance name -> instance id
    instance_names: dict[str, dict[str, str]] = field(default_factory=dict)
    # tenant id -> group name -> group
    server_groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    instance_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    # VM images (cluster-wide) by name; their blobs by sha256, with the controllers that hold a copy
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_blobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # storage: volumes by id (names per tenant), snapshots by id (names per tenant), instance id -> attached
    # volume ids, hosts running storaged (capacity, backend) by host id, S3 access keys by id, buckets by name
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    volume_names: dict[str, dict[str, str]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshot_names: dict[str, dict[str, str]] = field(default_factory=dict)
    instance_volumes: dict[str, list[str]] = field(default_factory=dict)
    storage_hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    s3_credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # volume backups exported to S3 buckets by id (controller/state/backups.py)
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # networking (controller/state/networks.py, ports.py): VPCs with their VNIs, subnets (with their IP
    # allocations), ports, security groups, elastic IPs, peerings; the indexes below are derived in apply
    vpcs: dict[str, dict[str, Any]] = field(default_factory=dict)
    vpc_names: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant id -> name -> vpc id
    vnis: dict[str, str] = field(default_factory=dict)  # str(vni) -> vpc id
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnet_names: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant id -> name -> subnet id
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    port_macs: dict[str, str] = field(default_factory=dict)  # mac -> port id
    vpc_ports: dict[str, dict[str, str]] = field(default_factory=dict)  # vpc id -> port id -> ip
    security_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    sg_ports: dict[str, dict[str, str]] = field(default_factory=dict)  # sg id -> port id -> ip
    elastic_ips: dict[str, dict[str, Any]] = field(default_factory=dict)
    eip_addresses: dict[str, str] = field(default_factory=dict)  # address -> elastic ip id
    peerings: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_vpcs: dict[str, dict[str, int]] = field(default_factory=dict)  # host id -> vpc id -> ports there
    net_hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host id -> vtep, backend, rev
    meta: dict[str, Any] = field(default_factory=dict)
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["format"] = FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StateData:
        if raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported state format {raw.get('format')!r}")
        known = {f.name for f in fields(cls)}
        data = cls(**{k: v for k, v in raw.items() if k in known})
        if "host_instances" not in raw:  # written before the index existed
            for instance_id, instance in data.instances.items():
                if instance.get("host_id"):
                    data.host_instances.setdefault(instance["host_id"], []).append(instance_id)
        if "unplaced_instances" not in raw:  # written before the index existed
            data.unplaced_instances = {i: None for i, instance in data.instances.items() if not instance.get("host_id")}
        return data

    def is_empty(self) -> bool:
        return not self.tenants and not self.users and not self.secrets

    def sizes(self) -> dict[str, int]:
        return {
            "tenants": len(self.tenants),
            "users": len(self.users),
            "keys": len(self.keys),
            "secrets": sum(len(s) for s in self.secrets.values()),
            "audit": len(self.audit),
            "idempotency": len(self.idempotency),
            "hosts": len(self.hosts),
            "instances": len(self.instances),
        }
