"""The route table: every API route, its handler, body and response models, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from controller.api import compute_schemas as cs
from controller.api import image_schemas as ims
from controller.api import schemas as s
from controller.api.handlers import audit, cluster, hosts, identity, images, instances, secrets, system, users
from controller.api.handlers import sessions as instance_sessions
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
)
