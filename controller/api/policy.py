"""Which roles may call which route. Every route in the route table must have an entry here.

``roles`` are the roles allowed within the caller's own tenant; ``cluster_admin`` routes need role
admin in tenant ``default``; ``public`` routes need no credentials at all.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = frozenset({"admin", "developer", "viewer"})
WRITERS = frozenset({"admin", "developer"})
ADMIN = frozenset({"admin"})
NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    cluster_admin: bool = False
    public: bool = False


PUBLIC = Rule(roles=NONE, public=True)
CLUSTER_ADMIN = Rule(roles=ADMIN, cluster_admin=True)

POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/health"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/openapi.json"): PUBLIC,
    ("POST", "/v1/auth/login"): PUBLIC,
    ("GET", "/v1/auth/whoami"): Rule(ALL),
    ("GET", "/v1/roles"): Rule(ALL),
    ("POST", "/v1/tenants"): CLUSTER_ADMIN,
    ("GET", "/v1/tenants"): Rule(ALL),
    ("GET", "/v1/tenants/{tenant}"): Rule(ALL),
    ("DELETE", "/v1/tenants/{tenant}"): CLUSTER_ADMIN,
    ("GET", "/v1/tenants/{tenant}/quota"): CLUSTER_ADMIN,
    ("PUT", "/v1/tenants/{tenant}/quota"): CLUSTER_ADMIN,
    ("GET", "/v1/quota"): Rule(ALL),
    ("POST", "/v1/users"): Rule(ADMIN),
    ("GET", "/v1/users"): Rule(ADMIN),
    ("GET", "/v1/users/{user}"): Rule(ADMIN),
    ("PATCH", "/v1/users/{user}"): Rule(ADMIN),
    ("DELETE", "/v1/users/{user}"): Rule(ADMIN),
    ("POST", "/v1/keys"): Rule(WRITERS),
    ("GET", "/v1/keys"): Rule(ALL),
    ("GET", "/v1/keys/{key_id}"): Rule(ALL),
    ("DELETE", "/v1/keys/{key_id}"): Rule(WRITERS),
    ("POST", "/v1/secrets"): Rule(WRITERS),
    ("GET", "/v1/secrets"): Rule(ALL),
    ("GET", "/v1/secrets/{name}"): Rule(ALL),
    ("GET", "/v1/secrets/{name}/value"): Rule(WRITERS),
    ("PUT", "/v1/secrets/{name}"): Rule(WRITERS),
    ("DELETE", "/v1/secrets/{name}"): Rule(WRITERS),
    ("GET", "/v1/audit"): Rule(ADMIN),
    ("GET", "/v1/events"): Rule(ADMIN),
    ("GET", "/v1/cluster/members"): CLUSTER_ADMIN,
    ("POST", "/v1/cluster/members"): CLUSTER_ADMIN,
    ("DELETE", "/v1/cluster/members/{raft_address}"): CLUSTER_ADMIN,
    ("POST", "/v1/cluster/leader/transfer"): CLUSTER_ADMIN,
    ("GET", "/v1/cluster/backup"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/tokens"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/join"): PUBLIC,  # the one-time join token in the body is the credential
    ("GET", "/v1/hosts"): CLUSTER_ADMIN,
    ("GET", "/v1/hosts/{host}"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/{host}/drain"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/{host}/undrain"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/{host}/disable"): CLUSTER_ADMIN,
    ("POST", "/v1/hosts/{host}/enable"): CLUSTER_ADMIN,
    ("DELETE", "/v1/hosts/{host}"): CLUSTER_ADMIN,
    ("POST", "/v1/instances"): Rule(WRITERS),
    ("POST", "/v1/instances/batch"): Rule(WRITERS),
    ("GET", "/v1/instances"): Rule(ALL),
    ("GET", "/v1/instances/{instance}"): Rule(ALL),
    ("PATCH", "/v1/instances/{instance}"): Rule(WRITERS),
    ("POST", "/v1/instances/{instance}/stop"): Rule(WRITERS),
    ("POST", "/v1/instances/{instance}/start"): Rule(WRITERS),
    ("POST", "/v1/instances/{instance}/reboot"): Rule(WRITERS),
    ("POST", "/v1/instances/{instance}/resize"): Rule(WRITERS),
    ("DELETE", "/v1/instances/{instance}"): Rule(WRITERS),
    ("GET", "/v1/instances/{instance}/logs"): Rule(WRITERS),
    ("GET", "/v1/instances/{instance}/stats"): Rule(ALL),
    ("GET", "/v1/instances/{instance}/console"): Rule(WRITERS),
    ("POST", "/v1/instances/{instance}/exec"): Rule(WRITERS),
    ("GET", "/v1/instances/{instance}/exec/ws"): Rule(WRITERS),
    ("GET", "/v1/instances/{instance}/console/ws"): Rule(WRITERS),
    ("POST", "/v1/server-groups"): Rule(WRITERS),
    ("GET", "/v1/server-groups"): Rule(ALL),
    ("DELETE", "/v1/server-groups/{group}"): Rule(WRITERS),
    ("GET", "/v1/instance-types"): Rule(ALL),
    ("POST", "/v1/instance-types"): CLUSTER_ADMIN,
    ("DELETE", "/v1/instance-types/{name}"): CLUSTER_ADMIN,
    ("PUT", "/v1/images/blobs/{sha256}"): CLUSTER_ADMIN,
    ("POST", "/v1/images"): CLUSTER_ADMIN,
    ("GET", "/v1/images"): Rule(ALL),
    ("GET", "/v1/images/{name}"): Rule(ALL),
    ("DELETE", "/v1/images/{name}"): CLUSTER_ADMIN,
    ("POST", "/v1/volumes"): Rule(WRITERS),
    ("GET", "/v1/volumes"): Rule(ALL),
    ("GET", "/v1/volumes/{volume}"): Rule(ALL),
    ("DELETE", "/v1/volumes/{volume}"): Rule(WRITERS),
    ("POST", "/v1/volumes/{volume}/resize"): Rule(WRITERS),
    ("POST", "/v1/volumes/{volume}/attach"): Rule(WRITERS),
    ("POST", "/v1/volumes/{volume}/detach"): Rule(WRITERS),
    ("POST", "/v1/snapshots"): Rule(WRITERS),
    ("GET", "/v1/snapshots"): Rule(ALL),
    ("GET", "/v1/snapshots/{snapshot}"): Rule(ALL),
    ("DELETE", "/v1/snapshots/{snapshot}"): Rule(WRITERS),
    ("POST", "/v1/snapshots/{snapshot}/restore"): Rule(WRITERS),
    ("POST", "/v1/snapshots/{snapshot}/export"): Rule(WRITERS),
    ("GET", "/v1/backups"): Rule(ALL),
    ("GET", "/v1/backups/{backup}"): Rule(ALL),
    ("DELETE", "/v1/backups/{backup}"): Rule(WRITERS),
    ("POST", "/v1/s3/credentials"): Rule(WRITERS),
    ("GET", "/v1/s3/credentials"): Rule(ALL),
    ("DELETE", "/v1/s3/credentials/{access_key_id}"): Rule(WRITERS),
    ("GET", "/v1/buckets"): Rule(ALL),
    ("POST", "/v1/vpcs"): Rule(WRITERS),
    ("GET", "/v1/vpcs"): Rule(ALL),
    ("GET", "/v1/vpcs/{vpc}"): Rule(ALL),
    ("DELETE", "/v1/vpcs/{vpc}"): Rule(WRITERS),
    ("POST", "/v1/subnets"): Rule(WRITERS),
    ("GET", "/v1/subnets"): Rule(ALL),
    ("GET", "/v1/subnets/{subnet}"): Rule(ALL),
    ("PATCH", "/v1/subnets/{subnet}"): Rule(WRITERS),
    ("DELETE", "/v1/subnets/{subnet}"): Rule(WRITERS),
    ("GET", "/v1/ports"): Rule(ALL),
    ("GET", "/v1/ports/{port}"): Rule(ALL),
    ("PATCH", "/v1/ports/{port}"): Rule(WRITERS),
    ("POST", "/v1/security-groups"): Rule(WRITERS),
    ("GET", "/v1/security-groups"): Rule(ALL),
    ("GET", "/v1/security-groups/{sg}"): Rule(ALL),
    ("DELETE", "/v1/security-groups/{sg}"): Rule(WRITERS),
    ("POST", "/v1/security-groups/{sg}/rules"): Rule(WRITERS),
    ("DELETE", "/v1/security-groups/{sg}/rules/{rule_id}"): Rule(WRITERS),
    ("POST", "/v1/elastic-ips"): Rule(WRITERS),
    ("GET", "/v1/elastic-ips"): Rule(ALL),
    ("GET", "/v1/elastic-ips/{eip}"): Rule(ALL),
    ("DELETE", "/v1/elastic-ips/{eip}"): Rule(WRITERS),
    ("POST", "/v1/elastic-ips/{eip}/associate"): Rule(WRITERS),
    ("POST", "/v1/elastic-ips/{eip}/disassociate"): Rule(WRITERS),
    ("POST", "/v1/peerings"): Rule(WRITERS),
    ("GET", "/v1/peerings"): Rule(ALL),
    ("DELETE", "/v1/peerings/{peering}"): Rule(WRITERS),
}

ROLE_DESCRIPTIONS = {
    "admin": "manages users, keys and everything else in the tenant; in tenant 'default': the whole cluster",
    "developer": "creates and uses resources and secrets in the tenant",
    "viewer": "reads metadata in the tenant; cannot read secret values or change anything",
}


def allows(rule: Rule, role: str, is_cluster_admin: bool) -> bool:
    if rule.public:
        return True
    if rule.cluster_admin:
        return is_cluster_admin
    return role in rule.roles
