"""RBAC and tenant isolation, generated from the route table.

Every route in ROUTES x every caller (cluster admin, tenant admin, developer, viewer, anonymous) x
own/other tenant is one test. Tenant users live in tenant A (the "other" tenant is B); the cluster
admin is the admin of tenant ``default`` (its "other" tenant is A). "other" means:

- routes with path parameters: filled with an object of the other tenant (ids for tenants/users/keys,
  which are global; for secrets and server groups, the name plus ``?tenant=<other>``, since names are per
  tenant; for instances, the id: alone for tenant users, who must get 404, with ``?tenant=<other>`` for the
  cluster admin); hosts and instance types are global (cluster admin only);
- list/create routes that take ``?tenant=`` (or ``"tenant"``/``"user"`` in the body): naming the
  other tenant (or its user);
- routes with neither: the same request, where only the leak check below differs.

Expectations come from POLICY (pinned separately by test_policy_matches_the_documented_access):

- anonymous on a non-public route -> 401 (with WWW-Authenticate);
- a role POLICY does not allow -> 403 ``forbidden`` (and destructive targets are left untouched);
- an allowed role on its own tenant's object -> the route's success status (or the natural non-auth
  status the sample documents: 422 for deleting tenant ``default``, 409 for Raft membership changes
  on the in-memory store or for removing the leader, 404 for a non-member, 503 ``unavailable`` for an
  instance's logs/stats/console/exec and exec session, since the in-process server has no agent link, 409
  ``not_supported`` for the console session of a container; the WebSocket routes are sampled with a plain GET:
  everything the matrix checks is decided before the upgrade);
- an allowed tenant role on the other tenant -> 404 when it names the other tenant's object, 403 when
  it names the other tenant itself, never 2xx; the cluster admin may act across tenants and gets 2xx.

No response to a tenant user or an anonymous caller may contain the other tenant's names, ids, keys
or secret values (other than what the caller itself sent). Every authenticated mutating request must
leave exactly one audit record with the response's request id, status and outcome.

A new route without an entry in SAMPLES makes its cells (and test_every_route_has_a_sample) fail.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api import app as app_module
from controller.api import policy as policy_module
from controller.api.policy import POLICY, allows
from controller.api.routes import ROUTES, Route
from controller.store.snapshot_file import BACKUP_MAGIC
from shared.sdk import CloudClient
from tests.api.compute_util import join_host, new_csr, report_status, up_host
from tests.api.conftest import (
    RAFT_ADDRESS,
    Account,
    ApiServer,
    TenantWorld,
    bearer,
    make_account,
    make_tenant,
    unique,
)
from tests.api.rbac_network import NETWORK_ACCESS, NETWORK_SAMPLES, network_side
from tests.api.rbac_storage import STORAGE_ACCESS, STORAGE_SAMPLES, STORAGE_WORLD, storage_side
from tests.api.storage_util import storage_report
from tests.harness.ports import free_port

ROLES = ("cluster-admin", "admin", "developer", "viewer", "anonymous")
SCOPES = ("own", "other")
PASSWORD = "matrix-password-1"


# -- the world -------------------------------------------------------------------------------------
@dataclass
class Side:
    """One tenant as seen by the matrix: its accounts, a password user, a secret, a spare key each, an
    instance (on the world's host) and a server group."""

    world: TenantWorld
    login_name: str
    login_id: str
    secret_name: str
    secret_value: str
    spare_keys: dict[str, str] = field(default_factory=dict)  # role -> id of a second key of that account
    instance_id: str = ""
    instance_name: str = ""
    group_name: str = ""
    volume_id: str = ""
    volume_name: str = ""
    snapshot_id: str = ""
    snapshot_name: str = ""
    bucket_name: str = ""
    backup_id: str = ""
    network: dict[str, str] = field(default_factory=dict)  # ids and names of its VPC, subnet, group, EIP...

    @property
    def id(self) -> str:
        return self.world.id

    @property
    def name(self) -> str:
        return self.world.name

    def strings(self) -> set[str]:
        """Everything that identifies this tenant's data."""
        out = {self.id, self.name, self.login_name, self.login_id, self.secret_name, self.secret_value,
               self.instance_id, self.instance_name, self.group_name, self.volume_id, self.volume_name,
               self.snapshot_id, self.snapshot_name, self.bucket_name, self.backup_id}
        for account in self.world.accounts.values():
            out |= {account.name, account.id, account.key_id, account.key}
        out |= set(self.spare_keys.values())
        out |= set(self.network.values())
        return out


@dataclass
class World:
    api: ApiServer
    admin: CloudClient
    default: Side  # the cluster admin's tenant
    a: Side  # the tenant of the admin/developer/viewer callers
    b: Side  # the other tenant
    host: dict[str, Any] = field(default_factory=dict)  # an up host with room for every instance made here


def _side(admin: CloudClient, world: TenantWorld, with_login: bool = True) -> Side:
    login_name, login_id = "", ""
    if with_login:
        login = admin.users.create(unique("login"), "viewer", password=PASSWORD, tenant=world.name)
        login_name, login_id = login["name"], login["id"]
    secret_name, secret_value = unique("sec"), "value-" + uuid.uuid4().hex
    admin.secrets.create(secret_name, secret_value, tenant=world.name)
    side = Side(world=world, login_name=login_name, login_id=login_id, secret_name=secret_name,
                secret_value=secret_value)
    for role, account in world.accounts.items():
        side.spare_keys[role] = admin.keys.create(unique("spare"), user=account.name)["id"]
    instance = admin.instances.create(unique("inst"), "alpine", instance_type="tiny", tenant=world.name)
    side.instance_id, side.instance_name = instance["id"], instance["name"]
    side.group_name = admin.server_groups.create(unique("grp"), "anti-affinity", tenant=world.name)["name"]
    storage_side(side, admin)
    network_side(side, admin)
    return side


@pytest.fixture(scope="module")
def world(api: ApiServer, admin: CloudClient) -> World:
    who = admin.auth.whoami()
    bootstrap_key_id = api.admin_key.split("_")[1]
    ca = Account(name=who["user"]["name"], id=who["user"]["id"], role="admin", tenant_id=who["tenant"]["id"],
                 key=api.admin_key, key_id=bootstrap_key_id)
    default = TenantWorld(id=who["tenant"]["id"], name=who["tenant"]["name"], accounts={"cluster-admin": ca})
    # a second user in tenant default, so "own" user routes of the cluster admin have a target
    default.accounts["viewer"] = make_account(admin, "default", "viewer", "dflt")
    # one up host for every instance the matrix creates (no agent: its address is unreachable)
    host = up_host(api, admin, vcpu=100_000, memory_mb=100_000_000, disk_gb=1_000_000)
    storage_report(api, host["id"], total_gb=10_000_000)  # it runs storaged too: every volume made here
    STORAGE_WORLD["api"] = api
    a, b = make_tenant(admin, "rbac-a"), make_tenant(admin, "rbac-b")
    for tenant in (a, b):
        admin.tenants.set_quota(tenant.name, {"instances": -1, "vcpus": -1, "memory_mb": -1, "volumes": -1,
                                              "volume_gb": -1})
    return World(api=api, admin=admin, default=_side(admin, default, with_login=False), a=_side(admin, a),
                 b=_side(admin, b), host=host)


# -- one cell --------------------------------------------------------------------------------------
@dataclass
class Cell:
    world: World
    route: Route
    role: str
    scope: str

    @property
    def is_ca(self) -> bool:
        return self.role == "cluster-admin"

    @property
    def own(self) -> Side:
        return self.world.default if self.is_ca else self.world.a

    @property
    def other(self) -> Side:
        return self.world.a if self.is_ca else self.world.b

    @property
    def target(self) -> Side:
        """The tenant whose objects fill the path parameters."""
        return self.own if self.scope == "own" else self.other

    @property
    def caller(self) -> Account | None:
        if self.role == "anonymous":
            return None
        return self.own.world.accounts[self.role]

    @property
    def target_role(self) -> str:
        """The role of the target tenant's account that stands in for the caller's own account."""
        role = "admin" if self.role in ("cluster-admin", "anonymous") else self.role
        return role if role in self.target.world.accounts else "viewer"

    @property
    def other_scope(self) -> bool:
        return self.scope == "other"

    def across(self, ok: int, refused: int) -> int:
        """Status when acting on the target tenant: own -> ok; other -> ok for the cluster admin only."""
        if self.scope == "own" or self.is_ca:
            return ok
        return refused

    # fresh targets, created by the cluster admin -------------------------------------------------
    @property
    def admin(self) -> CloudClient:
        return self.world.admin

    def fresh_user(self, role: str = "developer") -> dict[str, Any]:
        return self.admin.users.create(unique("fresh"), role, tenant=self.target.name)

    def fresh_key(self, account: Account) -> dict[str, Any]:
        return self.admin.keys.create(unique("fresh"), user=account.name)

    def fresh_secret(self) -> str:
        name = unique("fresh")
        self.admin.secrets.create(name, "fresh-value", tenant=self.target.name)
        return name

    def fresh_instance(self) -> dict[str, Any]:
        return self.admin.instances.create(unique("fresh"), "alpine", instance_type="tiny", tenant=self.target.name)

    def fresh_host(self) -> dict[str, Any]:
        """A joined host that never heartbeated (state "new"): flags and deletion do not disturb the world."""
        joined = join_host(self.admin)
        return {"id": joined["host_id"], "name": joined["name"]}


Check = Callable[[httpx.Response], None]


@dataclass
class Case:
    """The request for one cell and what an allowed caller gets."""

    path: str
    ok: int
    params: dict[str, str] | None = None
    json: Any = None
    check: Check | None = None  # run on the response of an allowed caller
    unchanged: Callable[[], None] | None = None  # run after a refused request: the target is intact
    foreign: set[str] = field(default_factory=set)  # extra strings of the other tenant that must not leak
    stream: bool = False
    check_errors: bool = False  # run ``check`` on an error answer too (when ``ok`` is an error status)
    content: bytes | None = None  # a raw body instead of ``json`` (image blob uploads)


def _json(r: httpx.Response) -> Any:
    return r.json()


def _all_in_tenant(tenant_id: str) -> Check:
    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert items, "expected at least one item"
        assert {item["tenant_id"] for item in items} == {tenant_id}, items

    return check


# -- samples: one per route ------------------------------------------------------------------------
def s_health(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["status"] == "ok" and body["role"] == "leader" and body["node"] == RAFT_ADDRESS

    return Case("/v1/health", 200, check=check)


def s_metrics(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert r.headers["content-type"].startswith("text/plain")
        assert "thecloud_raft_commit_index" in r.text

    return Case("/metrics", 200, check=check)


def s_openapi(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        doc = _json(r)
        assert doc["openapi"].startswith("3.")
        assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == {r.key for r in ROUTES}

    return Case("/v1/openapi.json", 200, check=check)


def s_login(c: Cell) -> Case:
    side = c.target if c.target.login_name else c.world.a

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["token_type"] == "Bearer"
        with c.world.api.client(token=body["token"]) as client:
            assert client.auth.whoami()["user"]["id"] == side.login_id

    return Case("/v1/auth/login", 200, json={"username": side.login_name, "password": PASSWORD}, check=check)


def s_whoami(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert c.caller is not None
        assert body["user"]["id"] == c.caller.id and body["tenant"]["id"] == c.own.id
        assert body["role"] == c.caller.role

    return Case("/v1/auth/whoami", 200, check=check)


def s_roles(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert [item["name"] for item in _json(r)["items"]] == ["admin", "developer", "viewer"]

    return Case("/v1/roles", 200, check=check)


def s_create_tenant(c: Cell) -> Case:
    name = unique("newt")

    def check(r: httpx.Response) -> None:
        assert _json(r)["name"] == name

    def unchanged() -> None:
        assert name not in {t["name"] for t in c.admin.tenants.list_all()}

    return Case("/v1/tenants", 201, json={"name": name, "description": "made by the matrix"}, check=check,
                unchanged=unchanged)


def s_list_tenants(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        ids = {t["id"] for t in _json(r)["items"]}
        if c.is_ca:
            assert {c.world.default.id, c.world.a.id, c.world.b.id} <= ids
        else:
            assert ids == {c.own.id}

    return Case("/v1/tenants", 200, params={"limit": "1000"}, check=check)


def s_get_tenant(c: Cell) -> Case:
    ident = c.target.name if c.scope == "own" else c.target.id

    def check(r: httpx.Response) -> None:
        assert _json(r)["id"] == c.target.id

    return Case(f"/v1/tenants/{ident}", c.across(200, 404), check=check)


def s_delete_tenant(c: Cell) -> Case:
    if c.scope == "own":
        # the caller's own tenant: for the cluster admin that is "default", which can never be deleted
        target = c.own
        ok = 422

        def check(r: httpx.Response) -> None:
            assert _json(r)["error"]["code"] == "validation_failed"
    else:
        fresh = c.admin.tenants.create(unique("doomed"))
        target = Side(world=TenantWorld(id=fresh["id"], name=fresh["name"], accounts={}), login_name="",
                      login_id="", secret_name="", secret_value="")
        ok = 204

        def check(r: httpx.Response) -> None:
            assert fresh["name"] not in {t["name"] for t in c.admin.tenants.list_all()}

    def unchanged() -> None:
        assert c.admin.tenants.get(target.id)["name"] == target.name

    return Case(f"/v1/tenants/{target.id}", ok, check=check, unchanged=unchanged, check_errors=True)


def s_get_tenant_quota(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["tenant_id"] == c.target.id and "secrets" in body["limits"] and "secrets" in body["usage"]

    return Case(f"/v1/tenants/{c.target.name}/quota", 200, check=check)


def s_set_tenant_quota(c: Cell) -> Case:
    if c.scope == "own":
        tenant_id = c.own.id
    else:
        tenant_id = c.admin.tenants.create(unique("quota"))["id"]
    before = c.admin.tenants.get_quota(tenant_id)["limits"]["volumes"]
    value = 7

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["tenant_id"] == tenant_id and body["limits"]["volumes"] == value

    def unchanged() -> None:
        assert c.admin.tenants.get_quota(tenant_id)["limits"]["volumes"] == before

    return Case(f"/v1/tenants/{tenant_id}/quota", 200, json={"limits": {"volumes": value}}, check=check,
                unchanged=unchanged)


def s_own_quota(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert _json(r)["tenant_id"] == c.own.id

    return Case("/v1/quota", 200, check=check)


def s_create_user(c: Cell) -> Case:
    name = unique("newu")
    body: dict[str, Any] = {"name": name, "role": "viewer"}
    if c.other_scope:
        body["tenant"] = c.other.name

    def check(r: httpx.Response) -> None:
        user = _json(r)
        assert user["name"] == name and user["tenant_id"] == c.target.id and user["role"] == "viewer"

    def unchanged() -> None:
        assert name not in {u["name"] for u in c.admin.users.list_all(all_tenants=True)}

    return Case("/v1/users", c.across(201, 403), json=body, check=check, unchanged=unchanged)


def s_list_users(c: Cell) -> Case:
    params = {"limit": "1000"}
    if c.other_scope:
        params["tenant"] = c.other.name
    return Case("/v1/users", c.across(200, 403), params=params, check=_all_in_tenant(c.target.id))


def s_get_user(c: Cell) -> Case:
    account = c.target.world.accounts[c.target_role]
    ident = account.name if c.scope == "own" else account.id

    def check(r: httpx.Response) -> None:
        assert _json(r)["id"] == account.id

    return Case(f"/v1/users/{ident}", c.across(200, 404), check=check)


def s_update_user(c: Cell) -> Case:
    user = c.fresh_user("developer")

    def check(r: httpx.Response) -> None:
        assert _json(r)["role"] == "viewer"

    def unchanged() -> None:
        assert c.admin.users.get(user["id"])["role"] == "developer"

    return Case(f"/v1/users/{user['id']}", c.across(200, 404), json={"role": "viewer"}, check=check,
                unchanged=unchanged, foreign={user["name"]} if c.other_scope else set())


def s_delete_user(c: Cell) -> Case:
    user = c.fresh_user("viewer")

    def check(r: httpx.Response) -> None:
        assert user["id"] not in {u["id"] for u in c.admin.users.list_all(all_tenants=True)}

    def unchanged() -> None:
        assert c.admin.users.get(user["id"])["name"] == user["name"]

    return Case(f"/v1/users/{user['id']}", c.across(204, 404), check=check, unchanged=unchanged,
                foreign={user["name"]} if c.other_scope else set())


def s_create_key(c: Cell) -> Case:
    name = unique("newk")
    body: dict[str, Any] = {"name": name}
    owner = c.caller
    if c.other_scope:
        owner = c.other.world.accounts[c.target_role]
        body["user"] = owner.name

    def check(r: httpx.Response) -> None:
        key = _json(r)
        assert owner is not None and key["user_id"] == owner.id and key["tenant_id"] == owner.tenant_id
        with c.world.api.client(api_key=key["secret"]) as client:
            assert client.auth.whoami()["user"]["id"] == owner.id

    def unchanged() -> None:
        with c.world.api.rt.view() as data:
            assert name not in {k["name"] for k in data.keys.values()}

    return Case("/v1/keys", c.across(201, 404), json=body, check=check, unchanged=unchanged)


def s_list_keys(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert c.caller is not None
        assert {k["tenant_id"] for k in items} == {c.own.id}
        assert c.caller.key_id in {k["id"] for k in items}
        if c.caller.role != "admin":
            assert {k["user_id"] for k in items} == {c.caller.id}

    return Case("/v1/keys", 200, params={"limit": "1000"}, check=check)


def s_get_key(c: Cell) -> Case:
    # own: a spare key of the caller itself (anonymous: of tenant A's admin); other: of the other tenant
    if c.scope == "other":
        key_id = c.target.spare_keys[c.target_role]
    else:
        key_id = c.target.spare_keys[c.role if c.caller else "admin"]

    def check(r: httpx.Response) -> None:
        assert _json(r)["id"] == key_id

    return Case(f"/v1/keys/{key_id}", c.across(200, 404), check=check)


def s_revoke_key(c: Cell) -> Case:
    owner = c.caller if c.scope == "own" and c.caller else c.target.world.accounts[c.target_role]
    key = c.fresh_key(owner)

    def works() -> bool:
        with c.world.api.client(api_key=key["secret"]) as client:
            try:
                client.auth.whoami()
            except Exception:
                return False
            return True

    def check(r: httpx.Response) -> None:
        assert not works(), "the revoked key still authenticates"

    def unchanged() -> None:
        assert works(), "a refused revoke revoked the key"

    return Case(f"/v1/keys/{key['id']}", c.across(204, 404), check=check, unchanged=unchanged,
                foreign={key["secret"], key["name"]} if c.other_scope else set())


def _tenant_param(c: Cell) -> dict[str, str] | None:
    return {"tenant": c.other.name} if c.other_scope else None


def s_create_secret(c: Cell) -> Case:
    name = unique("news")

    def check(r: httpx.Response) -> None:
        secret = _json(r)
        assert secret["name"] == name and secret["tenant_id"] == c.target.id and secret["version"] == 1

    def unchanged() -> None:
        assert name not in {s["name"] for s in c.admin.secrets.list_all(tenant=c.target.name)}

    return Case("/v1/secrets", c.across(201, 403), params=_tenant_param(c), json={"name": name, "value": "v"},
                check=check, unchanged=unchanged)


def s_list_secrets(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        _all_in_tenant(c.target.id)(r)
        assert c.target.secret_name in {s["name"] for s in _json(r)["items"]}

    params = {"limit": "1000", **(_tenant_param(c) or {})}
    return Case("/v1/secrets", c.across(200, 403), params=params, check=check)


def s_get_secret(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["name"] == c.target.secret_name and body["tenant_id"] == c.target.id
        assert "value" not in body and c.target.secret_value not in r.text

    return Case(f"/v1/secrets/{c.target.secret_name}", c.across(200, 403), params=_tenant_param(c), check=check)


def s_get_secret_value(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert _json(r) == {"name": c.target.secret_name, "version": 1, "value": c.target.secret_value}

    return Case(f"/v1/secrets/{c.target.secret_name}/value", c.across(200, 403), params=_tenant_param(c),
                check=check)


def s_rotate_secret(c: Cell) -> Case:
    name = c.fresh_secret()

    def check(r: httpx.Response) -> None:
        assert _json(r)["version"] == 2
        assert c.admin.secrets.get_value(name, tenant=c.target.name)["value"] == "rotated"

    def unchanged() -> None:
        assert c.admin.secrets.get_value(name, tenant=c.target.name) == {"name": name, "version": 1,
                                                                          "value": "fresh-value"}

    return Case(f"/v1/secrets/{name}", c.across(200, 403), params=_tenant_param(c), json={"value": "rotated"},
                check=check, unchanged=unchanged, foreign={name} if c.other_scope else set())


def s_delete_secret(c: Cell) -> Case:
    name = c.fresh_secret()

    def exists() -> bool:
        return name in {s["name"] for s in c.admin.secrets.list_all(tenant=c.target.name)}

    def check(r: httpx.Response) -> None:
        assert not exists()

    def unchanged() -> None:
        assert exists()

    return Case(f"/v1/secrets/{name}", c.across(204, 403), params=_tenant_param(c), check=check,
                unchanged=unchanged)


def s_audit(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert items
        if not c.is_ca:
            assert {item["tenant_id"] for item in items} == {c.own.id}

    return Case("/v1/audit", 200, params={"limit": "1000"}, check=check)


def s_events(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert r.headers["content-type"].startswith("text/event-stream")

    return Case("/v1/events", 200, check=check, stream=True)


def _members(c: Cell) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.admin.cluster.members.list()["items"]
    return items


def s_list_members(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert [(m["raft_address"], m["status"]) for m in _json(r)["items"]] == [(RAFT_ADDRESS, "leader")]

    return Case("/v1/cluster/members", 200, check=check)


def s_add_member(c: Cell) -> Case:
    before = _members(c)
    address = f"127.0.0.1:{free_port()}"  # nobody listens there

    def check(r: httpx.Response) -> None:
        # the in-memory store refuses membership changes: MembershipError -> 409 conflict
        error = _json(r)["error"]
        assert error["code"] == "conflict" and "no members" in error["message"]
        assert _members(c) == before

    def unchanged() -> None:
        assert _members(c) == before

    return Case("/v1/cluster/members", 409, json={"raft_address": address}, check=check, unchanged=unchanged,
                check_errors=True)


def s_remove_member(c: Cell) -> Case:
    before = _members(c)
    if c.scope == "own":
        # this controller itself, the leader: refused with 409 (stop it first)
        address, ok, code = RAFT_ADDRESS, 409, "conflict"
    else:
        address, ok, code = f"127.0.0.1:{free_port()}", 404, "not_found"

    def check(r: httpx.Response) -> None:
        assert _json(r)["error"]["code"] == code
        assert _members(c) == before

    def unchanged() -> None:
        assert _members(c) == before

    return Case(f"/v1/cluster/members/{address}", ok, check=check, unchanged=unchanged, check_errors=True)


def s_transfer_leader(c: Cell) -> Case:
    before = _members(c)
    if c.scope == "own":
        # a one-member cluster has no follower to hand leadership to: 409, leadership stays
        to, ok, code = RAFT_ADDRESS, 409, "conflict"
    else:
        to, ok, code = f"127.0.0.1:{free_port()}", 404, "not_found"

    def check(r: httpx.Response) -> None:
        assert _json(r)["error"]["code"] == code
        assert _members(c) == before

    def unchanged() -> None:
        assert _members(c) == before

    return Case("/v1/cluster/leader/transfer", ok, json={"to": to}, check=check, unchanged=unchanged,
                check_errors=True)


def s_backup(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.content.startswith(BACKUP_MAGIC)

    return Case("/v1/cluster/backup", 200, check=check)


# -- compute: hosts (global, cluster admin) ------------------------------------------------------------
def _join_tokens(c: Cell) -> int:
    with c.world.api.rt.view() as data:
        return len(data.join_tokens)


def s_create_host_token(c: Cell) -> Case:
    before = _join_tokens(c)

    def check(r: httpx.Response) -> None:
        token = _json(r)
        assert token["token"].startswith(f"tcj_{token['id']}_") and token["zone"] == "matrix"

    def unchanged() -> None:
        assert _join_tokens(c) == before

    return Case("/v1/hosts/tokens", 201, json={"expires_in_seconds": 600, "zone": "matrix"}, check=check,
                unchanged=unchanged)


def s_join_host(c: Cell) -> Case:
    # public: the one-time token is the credential, whoever sends it (a fresh one per cell)
    token = c.admin.hosts.create_token()["token"]
    name = unique("joined")

    def check(r: httpx.Response) -> None:
        joined = _json(r)
        assert joined["name"] == name and "BEGIN CERTIFICATE" in joined["certificate"]
        assert c.admin.hosts.get(joined["host_id"])["state"] == "new"

    return Case("/v1/hosts/join", 201, json={"token": token, "name": name, "csr": new_csr()}, check=check)


def s_list_hosts(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert c.world.host["id"] in {h["id"] for h in _json(r)["items"]}

    return Case("/v1/hosts", 200, params={"limit": "1000"}, check=check)


def s_get_host(c: Cell) -> Case:
    host = c.world.host
    ident = host["name"] if c.scope == "own" else host["id"]

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert body["id"] == host["id"] and body["state"] == "up"
        assert {c.world.a.instance_id, c.world.b.instance_id} <= {i["id"] for i in body["instances"]}

    return Case(f"/v1/hosts/{ident}", 200, check=check)


def _host_flag(verb: str, flag: str, value: bool) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        host = c.fresh_host()
        if verb in ("undrain", "enable"):  # start from the opposite state
            getattr(c.admin.hosts, "drain" if verb == "undrain" else "disable")(host["id"])

        def check(r: httpx.Response) -> None:
            assert _json(r)[flag] is value and c.admin.hosts.get(host["id"])[flag] is value

        def unchanged() -> None:
            assert c.admin.hosts.get(host["id"])[flag] is not value

        return Case(f"/v1/hosts/{host['name']}/{verb}", 200, check=check, unchanged=unchanged)

    sample.__name__ = f"s_{verb}_host"
    return sample


def s_delete_host(c: Cell) -> Case:
    host = c.fresh_host()

    def exists() -> bool:
        return host["id"] in {h["id"] for h in c.admin.hosts.list_all(limit=1000)}

    def check(r: httpx.Response) -> None:
        assert not exists()

    def unchanged() -> None:
        assert exists()

    return Case(f"/v1/hosts/{host['id']}", 204, check=check, unchanged=unchanged)


# -- compute: instances, server groups, instance types ---------------------------------------------------
def _instance_ref(c: Cell, instance_id: str, name: str) -> tuple[str, dict[str, str] | None]:
    """Own: by name. Other: by id; a tenant user cannot name the other tenant (only its instance: 404), the
    cluster admin names it with ?tenant=."""
    if c.scope == "own":
        return name, None
    return instance_id, ({"tenant": c.other.name} if c.is_ca else None)


def _shown(c: Cell, instance_id: str) -> dict[str, Any]:
    result: dict[str, Any] = c.admin.instances.get(instance_id, tenant=c.target.name)
    return result


def s_create_instance(c: Cell) -> Case:
    name = unique("newi")

    def check(r: httpx.Response) -> None:
        instance = _json(r)
        assert (instance["name"], instance["tenant_id"]) == (name, c.target.id)
        assert (instance["status"], instance["host"]) == ("scheduled", c.world.host["name"])

    def unchanged() -> None:
        assert name not in {i["name"] for i in c.admin.instances.list_all(tenant=c.target.name)}

    return Case("/v1/instances", c.across(201, 403), params=_tenant_param(c),
                json={"name": name, "image": "alpine", "instance_type": "tiny"}, check=check, unchanged=unchanged)


def s_create_instance_batch(c: Cell) -> Case:
    prefix = unique("newb")

    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert [i["name"] for i in items] == [f"{prefix}-1", f"{prefix}-2"]
        assert {(i["tenant_id"], i["status"], i["host"]) for i in items} == {
            (c.target.id, "scheduled", c.world.host["name"])}

    def unchanged() -> None:
        assert not any(i["name"].startswith(prefix) for i in c.admin.instances.list_all(tenant=c.target.name))

    return Case("/v1/instances/batch", c.across(201, 403), params=_tenant_param(c),
                json={"template": {"image": "alpine", "instance_type": "tiny"}, "name_prefix": prefix, "count": 2},
                check=check, unchanged=unchanged)


def s_list_instances(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        _all_in_tenant(c.target.id)(r)
        assert c.target.instance_id in {i["id"] for i in _json(r)["items"]}

    params = {"limit": "1000", **(_tenant_param(c) or {})}
    return Case("/v1/instances", c.across(200, 403), params=params, check=check)


def s_get_instance(c: Cell) -> Case:
    ident, params = _instance_ref(c, c.target.instance_id, c.target.instance_name)

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["id"], body["tenant_id"]) == (c.target.instance_id, c.target.id) and "events" in body

    return Case(f"/v1/instances/{ident}", c.across(200, 404), params=params, check=check)


def _instance_change(path: str, method_json: Any, prepare: Callable[[Cell, dict[str, Any]], None] | None,
                     changed: Callable[[dict[str, Any]], bool], ok: int = 200) -> Callable[[Cell], Case]:
    """A route that changes a fresh instance: ``changed`` tells the new state from the old one."""

    def sample(c: Cell) -> Case:
        instance = c.fresh_instance()
        if prepare is not None:
            prepare(c, instance)
        ident, params = _instance_ref(c, instance["id"], instance["name"])

        def check(r: httpx.Response) -> None:
            assert changed(_shown(c, instance["id"]))

        def unchanged() -> None:
            assert not changed(_shown(c, instance["id"]))

        return Case(f"/v1/instances/{ident}{path}", c.across(ok, 404), params=params, json=method_json,
                    check=check, unchanged=unchanged, foreign={instance["name"]} if c.other_scope else set())

    return sample


def _stop_first(c: Cell, instance: dict[str, Any]) -> None:
    c.admin.instances.stop(instance["id"], tenant=c.target.name)


s_update_instance = _instance_change("", {"tags": ["matrix"]}, None, lambda i: i["tags"] == ["matrix"])
s_stop_instance = _instance_change("/stop", None, None, lambda i: i["desired"] == "stopped")
s_start_instance = _instance_change("/start", None, _stop_first, lambda i: i["desired"] == "running")
s_reboot_instance = _instance_change(
    "/reboot", None, None, lambda i: "reboot requested" in {e["message"] for e in i["events"]})
s_resize_instance = _instance_change("/resize", {"memory_mb": 192}, None, lambda i: i["memory_mb"] == 192)


def s_delete_instance(c: Cell) -> Case:
    instance = c.fresh_instance()
    ident, params = _instance_ref(c, instance["id"], instance["name"])

    def check(r: httpx.Response) -> None:
        # on an up host it waits for the agent; the (absent) agent's report then purges it
        assert (_shown(c, instance["id"])["desired"], _shown(c, instance["id"])["status"]) == ("deleted", "deleting")
        report_status(c.world.api, c.world.host["id"], instance, "gone")
        assert instance["id"] not in {i["id"] for i in c.admin.instances.list_all(tenant=c.target.name)}

    def unchanged() -> None:
        assert _shown(c, instance["id"])["desired"] == "running"

    return Case(f"/v1/instances/{ident}", c.across(204, 404), params=params, check=check, unchanged=unchanged,
                foreign={instance["name"]} if c.other_scope else set())


def _agent_route(suffix: str, body: Any = None, fresh: bool = False, query: dict[str, str] | None = None,
                 own: tuple[int, str] = (503, "unavailable")) -> Callable[[Cell], Case]:
    """logs/stats/console/exec: the instance is looked up (in the caller's tenant) before the agent, and the
    in-process server has no agent link: 503 ``unavailable`` for one's own instance (or ``own``), 404 for
    another's."""

    def sample(c: Cell) -> Case:
        if fresh:  # exec is audited with its target: never the world's instance ids (they must not leak)
            instance = c.fresh_instance()
            instance_id, name = instance["id"], instance["name"]
        else:
            instance_id, name = c.target.instance_id, c.target.instance_name
        ident, params = _instance_ref(c, instance_id, name)
        if query:
            params = {**(params or {}), **query}
        ok = c.across(own[0], 404)

        def check(r: httpx.Response) -> None:
            assert _json(r)["error"]["code"] == (own[1] if ok == own[0] else "not_found")

        return Case(f"/v1/instances/{ident}/{suffix}", ok, params=params, json=body, check=check,
                    check_errors=True, foreign={name} if c.other_scope else set())

    sample.__name__ = f"s_instance_{suffix}"
    return sample


def s_create_group(c: Cell) -> Case:
    name = unique("newg")

    def check(r: httpx.Response) -> None:
        group = _json(r)
        assert (group["name"], group["policy"], group["tenant_id"]) == (name, "affinity", c.target.id)

    def unchanged() -> None:
        assert name not in {g["name"] for g in c.admin.server_groups.list_all(tenant=c.target.name)}

    return Case("/v1/server-groups", c.across(201, 403), params=_tenant_param(c),
                json={"name": name, "policy": "affinity"}, check=check, unchanged=unchanged)


def s_list_groups(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        _all_in_tenant(c.target.id)(r)
        assert c.target.group_name in {g["name"] for g in _json(r)["items"]}

    return Case("/v1/server-groups", c.across(200, 403), params=_tenant_param(c), check=check)


def s_delete_group(c: Cell) -> Case:
    name = c.admin.server_groups.create(unique("fresh"), "affinity", tenant=c.target.name)["name"]

    def exists() -> bool:
        return name in {g["name"] for g in c.admin.server_groups.list_all(tenant=c.target.name)}

    def check(r: httpx.Response) -> None:
        assert not exists()

    def unchanged() -> None:
        assert exists()

    return Case(f"/v1/server-groups/{name}", c.across(204, 403), params=_tenant_param(c), check=check,
                unchanged=unchanged, foreign={name} if c.other_scope else set())


def _type_names(c: Cell) -> set[str]:
    return {t["name"] for t in c.admin.instance_types.list_all()}


def s_list_types(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert {"tiny", "small", "medium", "large"} <= {t["name"] for t in _json(r)["items"]}

    return Case("/v1/instance-types", 200, check=check)


def s_create_type(c: Cell) -> Case:
    name = unique("type")

    def check(r: httpx.Response) -> None:
        assert _json(r) == {"name": name, "vcpus": 2, "memory_mb": 1024, "disk_gb": 10}

    def unchanged() -> None:
        assert name not in _type_names(c)

    return Case("/v1/instance-types", 201, json={"name": name, "vcpus": 2, "memory_mb": 1024, "disk_gb": 10},
                check=check, unchanged=unchanged)


def s_delete_type(c: Cell) -> Case:
    name = c.admin.instance_types.create(unique("type"), 1, 64, 1)["name"]

    def check(r: httpx.Response) -> None:
        assert name not in _type_names(c)

    def unchanged() -> None:
        assert name in _type_names(c)

    return Case(f"/v1/instance-types/{name}", 204, check=check, unchanged=unchanged)


# -- VM images: global (every role reads them, the cluster admin manages them) ------------------------
def _new_blob() -> tuple[str, bytes]:
    data = b"matrix blob " + uuid.uuid4().bytes
    return hashlib.sha256(data).hexdigest(), data


def _uploaded(c: Cell) -> str:
    sha, data = _new_blob()
    c.admin.request("PUT", f"/v1/images/blobs/{sha}", content=data,
                    headers={"Content-Type": "application/octet-stream"})
    return sha


def _fresh_image(c: Cell) -> str:
    name = unique("img")
    c.admin.images.register(name, _uploaded(c), format="raw")
    return name


def _image_names(c: Cell) -> set[str]:
    return {i["name"] for i in c.admin.images.list_all(limit=1000)}


def s_upload_blob(c: Cell) -> Case:
    sha, data = _new_blob()
    store = c.world.api.rt.images
    assert store is not None

    def check(r: httpx.Response) -> None:
        assert (_json(r)["sha256"], _json(r)["size"], _json(r)["holders"]) == (sha, len(data), [RAFT_ADDRESS])
        assert store.has(sha)

    def unchanged() -> None:
        assert not store.has(sha) and not store.temp_files()

    return Case(f"/v1/images/blobs/{sha}", 200, content=data, check=check, unchanged=unchanged)


def s_create_image(c: Cell) -> Case:
    sha, name = _uploaded(c), unique("img")

    def check(r: httpx.Response) -> None:
        image = _json(r)
        assert (image["name"], image["disk"]["sha256"], image["format"]) == (name, sha, "raw")

    def unchanged() -> None:
        assert name not in _image_names(c)

    return Case("/v1/images", 201, json={"name": name, "disk_sha256": sha, "format": "raw"}, check=check,
                unchanged=unchanged)


def s_list_images(c: Cell) -> Case:
    name = _fresh_image(c)

    def check(r: httpx.Response) -> None:
        assert name in {i["name"] for i in _json(r)["items"]}

    return Case("/v1/images", 200, params={"limit": "1000"}, check=check)


def s_get_image(c: Cell) -> Case:
    name = _fresh_image(c)

    def check(r: httpx.Response) -> None:
        assert (_json(r)["name"], _json(r)["holders"]) == (name, [RAFT_ADDRESS])

    return Case(f"/v1/images/{name}", 200, check=check)


def s_delete_image(c: Cell) -> Case:
    name = _fresh_image(c)

    def check(r: httpx.Response) -> None:
        assert name not in _image_names(c)

    def unchanged() -> None:
        assert name in _image_names(c)

    return Case(f"/v1/images/{name}", 204, check=check, unchanged=unchanged)


SAMPLES: dict[tuple[str, str], Callable[[Cell], Case]] = {
    ("GET", "/v1/health"): s_health,
    ("GET", "/metrics"): s_metrics,
    ("GET", "/v1/openapi.json"): s_openapi,
    ("POST", "/v1/auth/login"): s_login,
    ("GET", "/v1/auth/whoami"): s_whoami,
    ("GET", "/v1/roles"): s_roles,
    ("POST", "/v1/tenants"): s_create_tenant,
    ("GET", "/v1/tenants"): s_list_tenants,
    ("GET", "/v1/tenants/{tenant}"): s_get_tenant,
    ("DELETE", "/v1/tenants/{tenant}"): s_delete_tenant,
    ("GET", "/v1/tenants/{tenant}/quota"): s_get_tenant_quota,
    ("PUT", "/v1/tenants/{tenant}/quota"): s_set_tenant_quota,
    ("GET", "/v1/quota"): s_own_quota,
    ("POST", "/v1/users"): s_create_user,
    ("GET", "/v1/users"): s_list_users,
    ("GET", "/v1/users/{user}"): s_get_user,
    ("PATCH", "/v1/users/{user}"): s_update_user,
    ("DELETE", "/v1/users/{user}"): s_delete_user,
    ("POST", "/v1/keys"): s_create_key,
    ("GET", "/v1/keys"): s_list_keys,
    ("GET", "/v1/keys/{key_id}"): s_get_key,
    ("DELETE", "/v1/keys/{key_id}"): s_revoke_key,
    ("POST", "/v1/secrets"): s_create_secret,
    ("GET", "/v1/secrets"): s_list_secrets,
    ("GET", "/v1/secrets/{name}"): s_get_secret,
    ("GET", "/v1/secrets/{name}/value"): s_get_secret_value,
    ("PUT", "/v1/secrets/{name}"): s_rotate_secret,
    ("DELETE", "/v1/secrets/{name}"): s_delete_secret,
    ("GET", "/v1/audit"): s_audit,
    ("GET", "/v1/events"): s_events,
    ("GET", "/v1/cluster/members"): s_list_members,
    ("POST", "/v1/cluster/members"): s_add_member,
    ("DELETE", "/v1/cluster/members/{raft_address}"): s_remove_member,
    ("POST", "/v1/cluster/leader/transfer"): s_transfer_leader,
    ("GET", "/v1/cluster/backup"): s_backup,
    ("POST", "/v1/hosts/tokens"): s_create_host_token,
    ("POST", "/v1/hosts/join"): s_join_host,
    ("GET", "/v1/hosts"): s_list_hosts,
    ("GET", "/v1/hosts/{host}"): s_get_host,
    ("POST", "/v1/hosts/{host}/drain"): _host_flag("drain", "draining", True),
    ("POST", "/v1/hosts/{host}/undrain"): _host_flag("undrain", "draining", False),
    ("POST", "/v1/hosts/{host}/disable"): _host_flag("disable", "enabled", False),
    ("POST", "/v1/hosts/{host}/enable"): _host_flag("enable", "enabled", True),
    ("DELETE", "/v1/hosts/{host}"): s_delete_host,
    ("POST", "/v1/instances"): s_create_instance,
    ("POST", "/v1/instances/batch"): s_create_instance_batch,
    ("GET", "/v1/instances"): s_list_instances,
    ("GET", "/v1/instances/{instance}"): s_get_instance,
    ("PATCH", "/v1/instances/{instance}"): s_update_instance,
    ("POST", "/v1/instances/{instance}/stop"): s_stop_instance,
    ("POST", "/v1/instances/{instance}/start"): s_start_instance,
    ("POST", "/v1/instances/{instance}/reboot"): s_reboot_instance,
    ("POST", "/v1/instances/{instance}/resize"): s_resize_instance,
    ("DELETE", "/v1/instances/{instance}"): s_delete_instance,
    ("GET", "/v1/instances/{instance}/logs"): _agent_route("logs"),
    ("GET", "/v1/instances/{instance}/stats"): _agent_route("stats"),
    ("GET", "/v1/instances/{instance}/console"): _agent_route("console"),
    ("POST", "/v1/instances/{instance}/exec"): _agent_route("exec", {"command": ["true"]}, fresh=True),
    # sessions are audited like exec (fresh instances, see above); a plain GET never gets to the upgrade
    ("GET", "/v1/instances/{instance}/exec/ws"): _agent_route("exec/ws", fresh=True, query={"command": "true"}),
    ("GET", "/v1/instances/{instance}/console/ws"): _agent_route("console/ws", fresh=True,
                                                                   own=(409, "not_supported")),
    ("POST", "/v1/server-groups"): s_create_group,
    ("GET", "/v1/server-groups"): s_list_groups,
    ("DELETE", "/v1/server-groups/{group}"): s_delete_group,
    ("GET", "/v1/instance-types"): s_list_types,
    ("POST", "/v1/instance-types"): s_create_type,
    ("DELETE", "/v1/instance-types/{name}"): s_delete_type,
    ("PUT", "/v1/images/blobs/{sha256}"): s_upload_blob,
    ("POST", "/v1/images"): s_create_image,
    ("GET", "/v1/images"): s_list_images,
    ("GET", "/v1/images/{name}"): s_get_image,
    ("DELETE", "/v1/images/{name}"): s_delete_image,
    **STORAGE_SAMPLES,
    **NETWORK_SAMPLES,
}


# -- the matrix ------------------------------------------------------------------------------------
def _send(api: ApiServer, route: Route, case: Case, token: str | None, request_id: str) -> httpx.Response:
    headers = {"X-Request-Id": request_id, **(bearer(token) if token else {})}
    with httpx.Client(base_url=api.url, timeout=10.0) as client:
        request = client.build_request(route.method, case.path, params=case.params, json=case.json,
                                       content=case.content, headers=headers)
        response = client.send(request, stream=case.stream)
        if case.stream and response.status_code == 200:
            response.close()  # headers only: the event stream never ends
        else:
            response.read()
        return response


def _sent_text(case: Case) -> str:
    return f"{case.path} {case.params} {case.json}"


def _audit_records(world: World, actor: str, since: float) -> list[dict[str, Any]]:
    stamp = datetime.fromtimestamp(since - 0.001, UTC).isoformat()
    return world.admin.audit.list_all(limit=1000, actor=actor, since=stamp)


CELLS = [pytest.param(route.method, route.path, role, scope, id=f"{route.method} {route.path} [{role}/{scope}]")
         for route in ROUTES for role in ROLES for scope in SCOPES]


@pytest.mark.parametrize(("method", "path", "role", "scope"), CELLS)
def test_cell(world: World, method: str, path: str, role: str, scope: str) -> None:
    route = next(r for r in ROUTES if r.key == (method, path))
    if route.key not in SAMPLES:
        pytest.fail(f"no sample request for {method} {path}: add one to SAMPLES in {__file__}")
    rule = POLICY[route.key]
    cell = Cell(world=world, route=route, role=role, scope=scope)
    case = SAMPLES[route.key](cell)
    caller = cell.caller
    request_id = "matrix-" + uuid.uuid4().hex
    started = world.api.clock()
    response = _send(world.api, route, case, caller.key if caller else None, request_id)
    assert response.headers["X-Request-Id"] == request_id

    body = "" if case.stream and response.status_code == 200 else response.text
    if caller is None and not rule.public:
        assert response.status_code == 401, body
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        expected = 401
    elif caller is not None and not allows(rule, caller.role, cell.is_ca):
        assert response.status_code == 403, body
        error = response.json()["error"]
        assert error["code"] == "forbidden" and error["request_id"] == request_id
        expected = 403
    else:
        expected = case.ok
        assert response.status_code == expected, body
        if case.check is not None and (response.is_success or case.check_errors):
            case.check(response)
    if response.status_code >= 400 and case.unchanged is not None:
        case.unchanged()
    # nothing of the other tenant leaks to a tenant user (or anyone unauthenticated)
    if not cell.is_ca:
        sent = _sent_text(case)
        foreign = {s for s in (cell.other.strings() | case.foreign) if s and s not in sent}
        leaked = sorted(s for s in foreign if s in body)
        assert not leaked, f"the response leaks the other tenant's {leaked}: {body[:500]}"

    # every authenticated mutating (or otherwise audited: sessions) request is in the audit trail, with its
    # request id and outcome (login is public and changes nothing: it is not audited)
    if route.audited and not rule.public and caller is not None:
        records = [r for r in _audit_records(world, caller.name, started) if r["request_id"] == request_id]
        assert len(records) == 1, (records, response.status_code, body)
        record = records[0]
        if expected < 400:
            # the state machine records 200 for every success, whatever the HTTP status (201/204)
            assert record["outcome"] == "success" and 200 <= record["status"] < 300, record
        else:
            outcome = "denied" if expected in (401, 403) else "failed"
            assert (record["status"], record["outcome"]) == (expected, outcome), record
        if not cell.is_ca:  # a tenant user's attempts are filed under the caller's own tenant
            assert record["tenant_id"] == cell.own.id, record



# -- table consistency -----------------------------------------------------------------------------
def test_every_route_has_a_sample() -> None:
    routes = {r.key for r in ROUTES}
    assert set(SAMPLES) == routes, {"missing": routes - set(SAMPLES), "stale": set(SAMPLES) - routes}


def test_route_table_and_policy_table_match() -> None:
    routes = [r.key for r in ROUTES]
    assert len(routes) == len(set(routes)), "duplicate routes"
    assert set(routes) == set(POLICY), {"no policy": set(routes) - set(POLICY),
                                         "no route": set(POLICY) - set(routes)}
    for key, rule in POLICY.items():
        assert rule.public or rule.roles, f"{key} allows nobody"
        assert rule.roles <= policy_module.ALL, key
        if rule.public:
            assert not rule.cluster_admin and not rule.roles, key


# Who may call what, written out independently of POLICY (from the role summary in docs/api.md), so
# that loosening a rule in policy.py is a deliberate change here too, not something the matrix
# (which derives its expectations from POLICY) silently follows.
EXPECTED_ACCESS = {
    ("GET", "/v1/health"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/v1/openapi.json"): "public",
    ("POST", "/v1/auth/login"): "public",
    ("GET", "/v1/auth/whoami"): "viewer+",
    ("GET", "/v1/roles"): "viewer+",
    ("POST", "/v1/tenants"): "cluster-admin",
    ("GET", "/v1/tenants"): "viewer+",
    ("GET", "/v1/tenants/{tenant}"): "viewer+",
    ("DELETE", "/v1/tenants/{tenant}"): "cluster-admin",
    ("GET", "/v1/tenants/{tenant}/quota"): "cluster-admin",
    ("PUT", "/v1/tenants/{tenant}/quota"): "cluster-admin",
    ("GET", "/v1/quota"): "viewer+",
    ("POST", "/v1/users"): "admin",
    ("GET", "/v1/users"): "admin",
    ("GET", "/v1/users/{user}"): "admin",
    ("PATCH", "/v1/users/{user}"): "admin",
    ("DELETE", "/v1/users/{user}"): "admin",
    ("POST", "/v1/keys"): "developer+",
    ("GET", "/v1/keys"): "viewer+",
    ("GET", "/v1/keys/{key_id}"): "viewer+",
    ("DELETE", "/v1/keys/{key_id}"): "developer+",
    ("POST", "/v1/secrets"): "developer+",
    ("GET", "/v1/secrets"): "viewer+",
    ("GET", "/v1/secrets/{name}"): "viewer+",
    ("GET", "/v1/secrets/{name}/value"): "developer+",
    ("PUT", "/v1/secrets/{name}"): "developer+",
    ("DELETE", "/v1/secrets/{name}"): "developer+",
    ("GET", "/v1/audit"): "admin",
    ("GET", "/v1/events"): "admin",
    ("GET", "/v1/cluster/members"): "cluster-admin",
    ("POST", "/v1/cluster/members"): "cluster-admin",
    ("DELETE", "/v1/cluster/members/{raft_address}"): "cluster-admin",
    ("POST", "/v1/cluster/leader/transfer"): "cluster-admin",
    ("GET", "/v1/cluster/backup"): "cluster-admin",
    ("POST", "/v1/hosts/tokens"): "cluster-admin",
    ("POST", "/v1/hosts/join"): "public",
    ("GET", "/v1/hosts"): "cluster-admin",
    ("GET", "/v1/hosts/{host}"): "cluster-admin",
    ("POST", "/v1/hosts/{host}/drain"): "cluster-admin",
    ("POST", "/v1/hosts/{host}/undrain"): "cluster-admin",
    ("POST", "/v1/hosts/{host}/disable"): "cluster-admin",
    ("POST", "/v1/hosts/{host}/enable"): "cluster-admin",
    ("DELETE", "/v1/hosts/{host}"): "cluster-admin",
    ("POST", "/v1/instances"): "developer+",
    ("POST", "/v1/instances/batch"): "developer+",
    ("GET", "/v1/instances"): "viewer+",
    ("GET", "/v1/instances/{instance}"): "viewer+",
    ("PATCH", "/v1/instances/{instance}"): "developer+",
    ("POST", "/v1/instances/{instance}/stop"): "developer+",
    ("POST", "/v1/instances/{instance}/start"): "developer+",
    ("POST", "/v1/instances/{instance}/reboot"): "developer+",
    ("POST", "/v1/instances/{instance}/resize"): "developer+",
    ("DELETE", "/v1/instances/{instance}"): "developer+",
    ("GET", "/v1/instances/{instance}/logs"): "developer+",
    ("GET", "/v1/instances/{instance}/stats"): "viewer+",
    ("GET", "/v1/instances/{instance}/console"): "developer+",
    ("POST", "/v1/instances/{instance}/exec"): "developer+",
    ("GET", "/v1/instances/{instance}/exec/ws"): "developer+",
    ("GET", "/v1/instances/{instance}/console/ws"): "developer+",
    ("POST", "/v1/server-groups"): "developer+",
    ("GET", "/v1/server-groups"): "viewer+",
    ("DELETE", "/v1/server-groups/{group}"): "developer+",
    ("GET", "/v1/instance-types"): "viewer+",
    ("POST", "/v1/instance-types"): "cluster-admin",
    ("DELETE", "/v1/instance-types/{name}"): "cluster-admin",
    ("PUT", "/v1/images/blobs/{sha256}"): "cluster-admin",
    ("POST", "/v1/images"): "cluster-admin",
    ("GET", "/v1/images"): "viewer+",
    ("GET", "/v1/images/{name}"): "viewer+",
    ("DELETE", "/v1/images/{name}"): "cluster-admin",
    **STORAGE_ACCESS,
    **NETWORK_ACCESS,
}
ACCESS_RULES = {
    "public": policy_module.PUBLIC,
    "cluster-admin": policy_module.CLUSTER_ADMIN,
    "admin": policy_module.Rule(policy_module.ADMIN),
    "developer+": policy_module.Rule(policy_module.WRITERS),
    "viewer+": policy_module.Rule(policy_module.ALL),
}


def test_policy_matches_the_documented_access() -> None:
    assert set(EXPECTED_ACCESS) == {r.key for r in ROUTES}
    wrong = {key: (POLICY[key], access) for key, access in EXPECTED_ACCESS.items()
             if POLICY[key] != ACCESS_RULES[access]}
    assert not wrong, wrong


def test_docs_route_table_lists_every_route() -> None:
    """docs/api.md's route table has one row per route, no more and no less."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    rows = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| (/\S*) \|", text, re.MULTILINE)
    assert len(rows) == len(set(rows)), "a route is documented twice"
    routes = {r.key for r in ROUTES}
    assert set(rows) == routes, {"undocumented": routes - set(rows), "no such route": set(rows) - routes}


def test_viewers_never_change_anything_nor_read_values() -> None:
    for route in ROUTES:
        rule = POLICY[route.key]
        if rule.public:
            continue
        if route.mutating or route.path.endswith("/value"):
            assert not allows(rule, "viewer", False), route.key
        if rule.cluster_admin:
            assert not allows(rule, "admin", False), route.key


def test_build_app_refuses_a_route_without_policy(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(policy_module.POLICY, ("DELETE", "/v1/secrets/{name}"))
    with pytest.raises(app_module.MissingPolicy, match=r"DELETE /v1/secrets/\{name\}"):
        app_module.build_app(api.rt)


def test_openapi_roles_match_policy(http: httpx.Client) -> None:
    doc = http.get("/v1/openapi.json").json()
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        rule = POLICY[route.key]
        expected = "public" if rule.public else "cluster-admin" if rule.cluster_admin else sorted(rule.roles)
        assert op["x-roles"] == expected, route.key
        assert (op.get("security") == []) == rule.public, route.key


# -- secrets are looked up in the caller's tenant only ---------------------------------------------
@pytest.mark.parametrize("role", ["cluster-admin", "admin", "developer", "viewer"])
@pytest.mark.parametrize(("method", "suffix", "json"), [
    ("GET", "", None), ("GET", "/value", None), ("PUT", "", {"value": "x"}), ("DELETE", "", None)])
def test_other_tenants_secret_name_is_not_found(world: World, role: str, method: str, suffix: str,
                                                json: Any) -> None:
    """Without ?tenant=, a name of the other tenant's secret resolves in the caller's tenant: 404."""
    cell = Cell(world=world, route=ROUTES[0], role=role, scope="other")
    rule = POLICY[(method, "/v1/secrets/{name}" + suffix)]
    assert cell.caller is not None
    with httpx.Client(base_url=world.api.url, timeout=10.0) as client:
        r = client.request(method, f"/v1/secrets/{cell.other.secret_name}{suffix}", json=json,
                           headers=bearer(cell.caller.key))
    if allows(rule, cell.caller.role, cell.is_ca):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    else:
        assert r.status_code == 403, r.text
    assert cell.other.secret_value not in r.text
    assert world.admin.secrets.get_value(cell.other.secret_name, tenant=cell.other.name)["version"] == 1
