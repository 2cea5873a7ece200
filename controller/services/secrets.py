"""Secrets: encrypted before they are proposed; decrypted only for ``GET .../value``."""

from __future__ import annotations

from typing import Any

from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import not_found
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant


def _aad(tenant_id: str, name: str) -> str:
    return f"secret:{tenant_id}/{name}"


def _tenant_id(rt: Runtime, rc: RequestContext, tenant: str | None) -> str:
    with rt.view() as data:
        tenant_id: str = target_tenant(data, rc.caller, tenant)["id"]
        return tenant_id


async def create(rt: Runtime, rc: RequestContext, name: str, value: str,
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    if tenant is not None:
        await rt.consistent(rc)
    tenant_id = _tenant_id(rt, rc, tenant)
    args = {"tenant_id": tenant_id, "name": name, "ciphertext": rt.secretbox.encrypt(value, _aad(tenant_id, name))}
    out = await rt.propose(rc, "secret.create", args, action="secret.create", target=name, tenant_id=tenant_id)
    return views.secret(out.result), out.replayed


async def rotate(rt: Runtime, rc: RequestContext, name: str, value: str, tenant: str | None) -> dict[str, Any]:
    tenant_id = _tenant_id(rt, rc, tenant)
    args = {"tenant_id": tenant_id, "name": name, "ciphertext": rt.secretbox.encrypt(value, _aad(tenant_id, name))}
    out = await rt.propose(rc, "secret.rotate", args, action="secret.rotate", target=name, tenant_id=tenant_id)
    return views.secret(out.result)


async def delete(rt: Runtime, rc: RequestContext, name: str, tenant: str | None) -> None:
    tenant_id = _tenant_id(rt, rc, tenant)
    await rt.propose(rc, "secret.delete", {"tenant_id": tenant_id, "name": name}, action="secret.delete",
                     target=name, tenant_id=tenant_id)


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        items, nxt = views.page(data.secrets.get(tenant_id, {}), limit, marker)
        return {"items": [views.secret(s) for s in items], "next_marker": nxt}


def _find(rt: Runtime, rc: RequestContext, name: str, tenant: str | None) -> dict[str, Any]:
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        record = data.secrets.get(tenant_id, {}).get(name)
        if record is None:
            raise not_found("secret", name)
        return {**record, "versions": dict(record["versions"])}


async def get(rt: Runtime, rc: RequestContext, name: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    return views.secret(_find(rt, rc, name, tenant))


async def get_value(rt: Runtime, rc: RequestContext, name: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    record = _find(rt, rc, name, tenant)
    version = record["version"]
    value = rt.secretbox.decrypt(record["versions"][str(version)], _aad(record["tenant_id"], name))
    return {"name": name, "version": version, "value": value}
