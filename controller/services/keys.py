"""API keys: the secret is returned once at creation and stored only as a hash."""

from __future__ import annotations

from typing import Any

from controller.security.tokens import new_api_key
from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import forbidden, not_found
from controller.services.runtime import Runtime
from controller.services.users import visible_user


def _may_manage(rc: RequestContext, key_or_user: dict[str, Any], user_id: str) -> bool:
    caller = rc.caller
    if user_id == caller.user_id:
        return True
    if caller.is_cluster_admin:
        return True
    return caller.role == "admin" and key_or_user["tenant_id"] == caller.tenant_id


def _listed(rc: RequestContext, key: dict[str, Any]) -> bool:
    """Lists show your own keys; admins also see every key of their tenant."""
    caller = rc.caller
    return key["user_id"] == caller.user_id or (caller.role == "admin" and key["tenant_id"] == caller.tenant_id)


async def create(rt: Runtime, rc: RequestContext, name: str, user: str | None,
                 expires_in: int | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    owner = visible_user(rt, rc, user) if user else {"id": rc.caller.user_id, "tenant_id": rc.caller.tenant_id}
    if not _may_manage(rc, owner, owner["id"]):
        raise forbidden("only an admin may create keys for another user")
    new = new_api_key()
    expires_at = rt.clock() + expires_in if expires_in else None
    args = {"id": new.key_id, "name": name, "user_id": owner["id"], "secret_hash": new.secret_hash,
            "expires_at": expires_at, "sealed_secret": rt.secretbox.encrypt(new.token, _aad(new.key_id))}
    out = await rt.propose(rc, "key.create", args, action="key.create", target=name, tenant_id=owner["tenant_id"])
    view = views.api_key(out.result)
    # A replay (the client retried after a lost response) gets the key that was really created.
    view["secret"] = rt.secretbox.decrypt(out.result["sealed_secret"], _aad(out.result["id"]))
    return view, out.replayed


def _aad(key_id: str) -> str:
    return f"apikey:{key_id}"


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        items, nxt = views.page(data.keys, limit, marker, keep=lambda k: _listed(rc, k))
        return {"items": [views.api_key(k) for k in items], "next_marker": nxt}


def _visible_key(rt: Runtime, rc: RequestContext, key_id: str) -> dict[str, Any]:
    with rt.view() as data:
        key = data.keys.get(key_id)
        if key is None or not _may_manage(rc, key, key["user_id"]):
            raise not_found("key", key_id)
        return dict(key)


async def get(rt: Runtime, rc: RequestContext, key_id: str) -> dict[str, Any]:
    await rt.consistent(rc)
    return views.api_key(_visible_key(rt, rc, key_id))


async def revoke(rt: Runtime, rc: RequestContext, key_id: str) -> None:
    await rt.consistent(rc)
    key = _visible_key(rt, rc, key_id)
    await rt.propose(rc, "key.revoke", {"key_id": key["id"]}, action="key.revoke", target=key["id"],
                     tenant_id=key["tenant_id"])
