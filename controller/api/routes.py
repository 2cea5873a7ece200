"""The route table: every API route, its handler, body and response models, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from controller.api import compute_schemas as cs
from controller.api import image_schemas as ims
from controller.api import network_schemas as ns
from controller.api import schemas as s
from controller.api import storage_schemas as ss
from controller.api.handlers import audit, cluster, hosts, identity, images, instances, secrets, system, users
from controller.api.handlers import backups as backup_handlers
from controller.api.handlers import networks as net
from controller.api.handlers import s3 as s3_handlers
from controller.api.handlers import sessions as instance_sessions
from controller.api.handlers import volumes as volume_handlers
from controller.api.request import ApiRequest

Handler = Callable[[ApiRequest], Awaitable[web.StreamResponse]]

LIST_QUERY = ("limit", "marker")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[str, ...] = ()
    content_type: str = "application/json"
    audit: str = ""
    # the handler reads the request body itself, in pieces (uploads): dispatch must not read it into memory
    stream_body: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

    @property
    def audited(self) -> bool:
        """Mutations, and the routes that name an audit action although they are GETs (WebSocket sessions)."""
        return self.mutating or bool(self.audit)

    @property
    def action(self) -> str:
        """The audit action, the same whether the request is carried out or refused."""
        return self.audit or f"{self.method.lower()} {self.path}"


def _tenant_query(*extra: str) -> tuple[str, ...]:
    return ("stale", "tenant", *extra)


# volumes, snapshots, S3 credentials and buckets
STORAGE_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/volumes", volume_handlers.create_volume, "Create a volume on a storage host",
          body=ss.VolumeCreate, response=ss.Volume, status=201, query=("tenant",), audit="volume.create"),
    Route("GET", "/v1/volumes", volume_handlers.list_volumes, "List volumes", response=ss.VolumePage,
          query=(*LIST_QUERY, *_tenant_query())),
    Route("GET", "/v1/volumes/{volume}", volume_handlers.get_volume, "Show a volume", response=ss.Volume,
          query=_tenant_query()),
    Route("DELETE", "/v1/volumes/{volume}", volume_handlers.delete_volume,
          "Delete a detached volume without snapshots", status=204, query=("tenant",), audit="volume.delete"),
    Route("POST", "/v1/volumes/{volume}/resize", volume_handlers.resize_volume, "Grow a volume",
          body=ss.VolumeResize, response=ss.Volume, query=("tenant",), audit="volume.resize"),
    Route("POST", "/v1/volumes/{volume}/attach", volume_handlers.attach_volume,
          "Attach a volume to an instance on its host", body=ss.VolumeAttach, response=ss.Volume,
          query=("tenant",), audit="volume.attach"),
    Route("POST", "/v1/volumes/{volume}/detach", volume_handlers.detach_volume, "Detach a volume",
          response=ss.Volume, query=("tenant",), audit="volume.detach"),
    Route("POST", "/v1/snapshots", volume_handlers.create_snapshot, "Snapshot a volume", body=ss.SnapshotCreate,
          response=ss.Snapshot, status=201, query=("tenant",), audit="snapshot.create"),
    Route("GET", "/v1/snapshots", volume_handlers.list_snapshots, "List snapshots", response=ss.SnapshotPage,
          query=(*LIST_QUERY, *_tenant_query("volume"))),
    Route("GET", "/v1/snapshots/{snapshot}", volume_handlers.get_snapshot, "Show a snapshot",
          response=ss.Snapshot, query=_tenant_query()),
    Route("DELETE", "/v1/snapshots/{snapshot}", volume_handlers.delete_snapshot, "Delete a snapshot", status=204,
          query=("tenant",), audit="snapshot.delete"),
    Route("POST", "/v1/snapshots/{snapshot}/restore", volume_handlers.restore_snapshot,
          "Restore a snapshot into a new volume (on the snapshot's host)", body=ss.SnapshotRestore,
          response=ss.Volume, status=201, query=("tenant",), audit="snapshot.restore"),
    Route("POST", "/v1/snapshots/{snapshot}/export", backup_handlers.export_snapshot,
          "Export a snapshot to one of the tenant's S3 buckets (a backup, restorable on any host)",
          body=ss.BackupExport, response=ss.Backup, status=201, query=("tenant",), audit="backup.create"),
    Route("GET", "/v1/backups", backup_handlers.list_backups, "List backups", response=ss.BackupPage,
          query=(*LIST_QUERY, *_tenant_query())),
    Route("GET", "/v1/backups/{backup}", backup_handlers.get_backup, "Show a backup", response=ss.Backup,
          query=_tenant_query()),
    Route("DELETE", "/v1/backups/{backup}", backup_handlers.delete_backup,
          "Delete a backup record (the object stays in its bucket)", status=204, query=("tenant",),
          audit="backup.delete"),
    Route("POST", "/v1/s3/credentials", s3_handlers.create_credential,
          "Create an S3 access key for yourself (the secret is shown once)", response=ss.S3CredentialCreated,
          status=201, audit="s3.credentials.create"),
    Route("GET", "/v1/s3/credentials", s3_handlers.list_credentials, "List S3 access keys (no secrets)",
          response=ss.S3CredentialPage, query=(*LIST_QUERY, "stale")),
    Route("DELETE", "/v1/s3/credentials/{access_key_id}", s3_handlers.delete_credential,
          "Delete an S3 access key", status=204, audit="s3.credentials.delete"),
    Route("GET", "/v1/buckets", s3_handlers.list_buckets, "List the tenant's S3 buckets", response=ss.BucketPage,
          query=(*LIST_QUERY, *_tenant_query())),
)

# VPCs, subnets, ports, security groups, elastic IPs and peerings
NETWORK_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/vpcs", net.create_vpc, "Create a VPC (its VNI and default security group come with it)",
          body=ns.VpcCreate, response=ns.Vpc, status=201, query=("tenant",), audit="vpc.create"),
    Route("GET", "/v1/vpcs", net.list_vpcs, "List VPCs", response=ns.VpcPage, query=(*LIST_QUERY, *_tenant_query())),
    Route("GET", "/v1/vpcs/{vpc}", net.get_vpc, "Show a VPC", response=ns.Vpc, query=_tenant_query()),
    Route("DELETE", "/v1/vpcs/{vpc}", net.delete_vpc, "Delete a VPC without ports or peerings (with its subnets "
          "and groups)", status=204, query=("tenant",), audit="vpc.delete"),
    Route("POST", "/v1/subnets", net.create_subnet, "Create a subnet inside a VPC", body=ns.SubnetCreate,
          response=ns.Subnet, status=201, query=("tenant",), audit="subnet.create"),
    Route("GET", "/v1/subnets", net.list_subnets, "List subnets", response=ns.SubnetPage,
          query=(*LIST_QUERY, *_tenant_query("vpc"))),
    Route("GET", "/v1/subnets/{subnet}", net.get_subnet, "Show a subnet", response=ns.Subnet,
          query=_tenant_query()),
    Route("PATCH", "/v1/subnets/{subnet}", net.update_subnet, "Turn a subnet's outbound NAT on or off",
          body=ns.SubnetUpdate, response=ns.Subnet, query=("tenant",), audit="subnet.update"),
    Route("DELETE", "/v1/subnets/{subnet}", net.delete_subnet, "Delete a subnet without ports", status=204,
          query=("tenant",), audit="subnet.delete"),
    Route("GET", "/v1/ports", net.list_ports, "List ports (instance NICs)", response=ns.PortPage,
          query=(*LIST_QUERY, *_tenant_query("vpc", "subnet"))),
    Route("GET", "/v1/ports/{port}", net.get_port, "Show a port", response=ns.Port, query=_tenant_query()),
    Route("PATCH", "/v1/ports/{port}", net.update_port, "Replace a port's security groups (groups of its VPC)",
          body=ns.PortUpdate, response=ns.Port, query=("tenant",), audit="port.update"),
    Route("POST", "/v1/security-groups", net.create_group, "Create a security group in a VPC",
          body=ns.SecurityGroupCreate, response=ns.SecurityGroup, status=201, query=("tenant",),
          audit="security_group.create"),
    Route("GET", "/v1/security-groups", net.list_groups, "List security groups", response=ns.SecurityGroupPage,
          query=(*LIST_QUERY, *_tenant_query("vpc"))),
    Route("GET", "/v1/security-groups/{sg}", net.get_group, "Show a security group with its rules",
          response=ns.SecurityGroup, query=_tenant_query("vpc")),
    Route("DELETE", "/v1/security-groups/{sg}", net.delete_group, "Delete a security group nothing uses",
          status=204, query=("tenant", "vpc"), audit="security_group.delete"),
    Route("POST", "/v1/security-groups/{sg}/rules", net.add_rule, "Add a rule to a security group",
          body=ns.RuleCreate, response=ns.Rule, status=201, query=("tenant", "vpc"),
          audit="security_group.rule.add"),
    Route("DELETE", "/v1/security-groups/{sg}/rules/{rule_id}", net.delete_rule, "Delete a rule", status=204,
          query=("tenant", "vpc"), audit="security_group.rule.delete"),
    Route("POST", "/v1/elastic-ips", net.allocate_eip, "Allocate an elastic IP from the public pool",
          response=ns.ElasticIp, status=201, query=("tenant",), audit="elastic_ip.allocate"),
    Route("GET", "/v1/elastic-ips", net.list_eips, "List elastic IPs", response=ns.ElasticIpPage,
          query=(*LIST_QUERY, *_tenant_query())),
    Route("GET", "/v1/elastic-ips/{eip}", net.get_eip, "Show an elastic IP (by id or address)",
          response=ns.ElasticIp, query=_tenant_query()),
    Route("DELETE", "/v1/elastic-ips/{eip}", net.release_eip, "Release a disassociated elastic IP", status=204,
          query=("tenant",), audit="elastic_ip.release"),
    Route("POST", "/v1/elastic-ips/{eip}/associate", net.associate_eip, "Associate an elastic IP with an instance",
          body=ns.ElasticIpAssociate, response=ns.ElasticIp, query=("tenant",), audit="elastic_ip.associate"),
    Route("POST", "/v1/elastic-ips/{eip}/disassociate", net.disassociate_eip, "Disassociate an elastic IP",
          response=ns.ElasticIp, query=("tenant",), audit="elastic_ip.disassociate"),
    Route("POST", "/v1/peerings", net.create_peering, "Peer two VPCs of the tenant (disjoint CIDRs)",
          body=ns.PeeringCreate, response=ns.Peering, status=201, query=("tenant",), audit="peering.create"),
    Route("GET", "/v1/peerings", net.list_peerings, "List VPC peerings", response=ns.PeeringPage,
          query=(*LIST_QUERY, *_tenant_query())),
    Route("DELETE", "/v1/peerings/{peering}", net.delete_peering, "Delete a VPC peering", status=204,
          query=("tenant",), audit="peering.delete"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", cluster.health, "Controller and Raft health", response=s.Health),
    Route("GET", "/metrics", system.metrics, "Prometheus metrics", content_type="text/plain"),
    Route("GET", "/v1/openapi.json", system.openapi, "This OpenAPI document"),
    Route("POST", "/v1/auth/login", identity.login, "Log in with a password; returns a JWT",
          body=s.LoginRequest, response=s.LoginResponse, audit="auth.login"),
    Route("GET", "/v1/auth/whoami", identity.whoami, "The calling user, tenant and role", response=s.Whoami,
          query=("stale",)),
    Route("GET", "/v1/roles", identity.list_roles, "Roles and what they may do", response=s.RoleList),
    Route("POST", "/v1/tenants", identity.create_tenant, "Create a tenant", body=s.TenantCreate,
          response=s.Tenant, status=201, audit="tenant.create"),
    Route("GET", "/v1/tenants", identity.list_tenants, "List tenants", response=s.TenantPage,
          query=(*LIST_QUERY, "stale")),
    Route("GET", "/v1/tenants/{tenant}", identity.get_tenant, "Show a tenant", response=s.Tenant,
          query=("stale",)),
    Route("DELETE", "/v1/tenants/{tenant}", identity.delete_tenant, "Delete an empty tenant", status=204,
          audit="tenant.delete"),
    Route("GET", "/v1/tenants/{tenant}/quota", identity.get_tenant_quota, "A tenant's quota and usage",
          response=s.Quota, query=("stale",)),
    Route("PUT", "/v1/tenants/{tenant}/quota", identity.set_tenant_quota, "Set a tenant's quota limits",
          body=s.QuotaUpdate, response=s.Quota, audit="quota.set"),
    Route("GET", "/v1/quota", identity.get_own_quota, "Your tenant's quota and usage", response=s.Quota,
          query=("stale",)),
    Route("POST", "/v1/users", users.create_user, "Create a user", body=s.UserCreate, response=s.User, status=201,
          audit="user.create"),
    Route("GET", "/v1/users", users.list_users, "List users", response=s.UserPage,
          query=(*LIST_QUERY, "all_tenants", *_tenant_query())),
    Route("GET", "/v1/users/{user}", users.get_user, "Show a user", response=s.User, query=("stale",)),
    Route("PATCH", "/v1/users/{user}", users.update_user, "Change a user's password, role or state",
          body=s.UserUpdate, response=s.User, audit="user.update"),
    Route("DELETE", "/v1/users/{user}", users.delete_user, "Delete a user and their keys", status=204,
          audit="user.delete"),
    Route("POST", "/v1/keys", users.create_key, "Create an API key (the secret is shown once)", body=s.KeyCreate,
          response=s.ApiKey, status=201, audit="key.create"),
    Route("GET", "/v1/keys", users.list_keys, "List API keys", response=s.ApiKeyPage,
          query=(*LIST_QUERY, "stale")),
    Route("GET", "/v1/keys/{key_id}", users.get_key, "Show an API key", response=s.ApiKey, query=("stale",)),
    Route("DELETE", "/v1/keys/{key_id}", users.revoke_key, "Revoke an API key", status=204, audit="key.revoke"),
    Route("POST", "/v1/secrets", secrets.create_secret, "Store a secret", body=s.SecretCreate, response=s.Secret,
          status=201, query=("tenant",), audit="secret.create"),
    Route("GET", "/v1/secrets", secrets.list_secrets, "List secrets (metadata only)", response=s.SecretPage,
          query=(*LIST_QUERY, *_tenant_query())),
    Route("GET", "/v1/secrets/{name}", secrets.get_secret, "Show a secret's metadata", response=s.Secret,
          query=_tenant_query()),
    Route("GET", "/v1/secrets/{name}/value", secrets.get_secret_value, "Read a secret's current value",
          response=s.SecretValue, query=_tenant_query()),
    Route("PUT", "/v1/secrets/{name}", secrets.rotate_secret, "Store a new version of a secret",
          body=s.SecretRotate, response=s.Secret, query=("tenant",), audit="secret.rotate"),
    Route("DELETE", "/v1/secrets/{name}", secrets.delete_secret, "Delete a secret", status=204,
          query=("tenant",), audit="secret.delete"),
    Route("GET", "/v1/audit", audit.list_audit, "The audit trail", response=s.AuditPage,
          query=(*LIST_QUERY, "stale", "tenant", "actor", "action", "outcome", "target", "since", "until")),
    Route("GET", "/v1/events", audit.stream_events, "Live audit events (server-sent events)",
          query=("after", "tenant"), content_type="text/event-stream"),
    Route("GET", "/v1/cluster/members", cluster.list_members, "Controller members", response=s.MemberList,
          query=("stale",)),
    Route("POST", "/v1/cluster/members", cluster.add_member, "Add a controller to the Raft cluster",
          body=s.MemberAdd, response=s.Member, status=201, audit="cluster.member.add"),
    Route("DELETE", "/v1/cluster/members/{raft_address}", cluster.remove_member,
          "Remove a controller from the Raft cluster", status=204, audit="cluster.member.remove"),
    Route("POST", "/v1/cluster/leader/transfer", cluster.transfer_leader,
          "Hand Raft leadership to another controller (given, else the most up-to-date one)",
          body=s.LeaderTransfer, response=s.LeaderTransferred, audit="cluster.leader.transfer"),
    Route("GET", "/v1/cluster/backup", cluster.backup, "A consistent snapshot of the whole state",
          content_type="application/octet-stream"),
    Route("POST", "/v1/hosts/tokens", hosts.create_token, "Create a one-time join token for a new host",
          body=cs.HostTokenCreate, response=cs.HostToken, status=201, audit="host.token.create"),
    Route("POST", "/v1/hosts/join", hosts.join, "Register a host with a join token; returns its certificate",
          body=cs.HostJoin, response=cs.HostJoined, status=201, audit="host.join"),
    Route("GET", "/v1/hosts", hosts.list_hosts, "List hosts", response=cs.HostPage,
          query=(*LIST_QUERY, "stale", "state")),
    Route("GET", "/v1/hosts/{host}", hosts.get_host, "Show a host: capacity, usage, allocations, state",
          response=cs.Host, query=("stale",)),
    Route("POST", "/v1/hosts/{host}/drain", hosts.drain_host, "Move instances off and accept nothing new",
          response=cs.Host, audit="host.drain"),
    Route("POST", "/v1/hosts/{host}/undrain", hosts.undrain_host, "Accept new instances again",
          response=cs.Host, audit="host.undrain"),
    Route("POST", "/v1/hosts/{host}/disable", hosts.disable_host, "Accept nothing new (instances stay)",
          response=cs.Host, audit="host.disable"),
    Route("POST", "/v1/hosts/{host}/enable", hosts.enable_host, "Enable a disabled host", response=cs.Host,
          audit="host.enable"),
    Route("DELETE", "/v1/hosts/{host}", hosts.delete_host, "Remove a down host without instances", status=204,
          audit="host.delete"),
    Route("POST", "/v1/instances", instances.create_instance, "Create an instance (container or VM)",
          body=cs.InstanceCreate, response=cs.Instance, status=201, query=("tenant",), audit="instance.create"),
    Route("POST", "/v1/instances/batch", instances.create_instances,
          "Create up to 1000 instances of one spec in one placement (all or none)", body=cs.InstanceBatchCreate,
          response=cs.InstancePage, status=201, query=("tenant",), audit="instance.create_batch"),
    Route("GET", "/v1/instances", instances.list_instances, "List instances", response=cs.InstancePage,
          query=(*LIST_QUERY, *_tenant_query("status", "tag"))),
    Route("GET", "/v1/instances/{instance}", instances.get_instance, "Show an instance with its events",
          response=cs.Instance, query=_tenant_query()),
    Route("PATCH", "/v1/instances/{instance}", instances.update_instance, "Set an instance's tags or metadata",
          body=cs.InstanceUpdate, response=cs.Instance, query=("tenant",), audit="instance.update"),
    Route("POST", "/v1/instances/{instance}/stop", instances.stop_instance, "Stop an instance",
          response=cs.Instance, query=("tenant",), audit="instance.stop"),
    Route("POST", "/v1/instances/{instance}/start", instances.start_instance, "Start a stopped instance",
          response=cs.Instance, query=("tenant",), audit="instance.start"),
    Route("POST", "/v1/instances/{instance}/reboot", instances.reboot_instance, "Reboot an instance",
          response=cs.Instance, query=("tenant",), audit="instance.reboot"),
    Route("POST", "/v1/instances/{instance}/resize", instances.resize_instance,
          "Change an instance's size in place (containers)", body=cs.InstanceResize, response=cs.Instance,
          query=("tenant",), audit="instance.resize"),
    Route("DELETE", "/v1/instances/{instance}", instances.delete_instance, "Delete an instance", status=204,
          query=("tenant",), audit="instance.delete"),
    Route("GET", "/v1/instances/{instance}/logs", instances.instance_logs, "An instance's output (follow=true streams)",
          query=(*_tenant_query(), "tail", "follow"), content_type="text/plain"),
    Route("GET", "/v1/instances/{instance}/stats", instances.instance_stats, "CPU and memory use right now",
          query=_tenant_query()),
    Route("GET", "/v1/instances/{instance}/console", instances.instance_console,
          "A VM's serial console output so far", query=_tenant_query()),
    Route("POST", "/v1/instances/{instance}/exec", instances.exec_instance, "Run a command in a container",
          body=cs.ExecRequest, response=cs.ExecResult, query=("tenant",), audit="instance.exec"),
    Route("GET", "/v1/instances/{instance}/exec/ws", instance_sessions.exec_ws,
          "Run a command interactively (WebSocket: binary frames carry stdin and output)", status=101,
          query=_tenant_query("command", "tty"), audit="instance.exec"),
    Route("GET", "/v1/instances/{instance}/console/ws", instance_sessions.console_ws,
          "A VM's serial console, interactively (WebSocket)", status=101, query=_tenant_query(),
          audit="instance.console"),
    Route("POST", "/v1/server-groups", instances.create_group, "Create an (anti-)affinity server group",
          body=cs.ServerGroupCreate, response=cs.ServerGroup, status=201, query=("tenant",),
          audit="server_group.create"),
    Route("GET", "/v1/server-groups", instances.list_groups, "List server groups", response=cs.ServerGroupPage,
          query=_tenant_query()),
    Route("DELETE", "/v1/server-groups/{group}", instances.delete_group, "Delete an empty server group",
          status=204, query=("tenant",), audit="server_group.delete"),
    Route("GET", "/v1/instance-types", instances.list_types, "Instance types (sizes)",
          response=cs.InstanceTypePage, query=("stale",)),
    Route("POST", "/v1/instance-types", instances.create_type, "Define an instance type",
          body=cs.InstanceTypeCreate, response=cs.InstanceType, status=201, audit="instance_type.create"),
    Route("DELETE", "/v1/instance-types/{name}", instances.delete_type, "Delete an instance type", status=204,
          audit="instance_type.delete"),
    Route("PUT", "/v1/images/blobs/{sha256}", images.upload_blob,
          "Upload an image blob (application/octet-stream, streamed); kept only if its sha256 matches",
          response=ims.ImageBlob, audit="image.blob.upload", stream_body=True),
    Route("POST", "/v1/images", images.create_image, "Register a VM image from uploaded blobs or a URL",
          body=ims.ImageCreate, response=ims.Image, status=201, audit="image.create"),
    Route("GET", "/v1/images", images.list_images, "List VM images", response=ims.ImagePage,
          query=(*LIST_QUERY, "stale")),
    Route("GET", "/v1/images/{name}", images.get_image, "Show a VM image", response=ims.Image, query=("stale",)),
    Route("DELETE", "/v1/images/{name}", images.delete_image, "Delete a VM image no instance uses", status=204,
          audit="image.delete"),
    *STORAGE_ROUTES,
    *NETWORK_ROUTES,
)
