"""S3 access keys (for the calling user; the secret is shown once and stored encrypted) and bucket listings."""

from __future__ import annotations

import secrets
from typing import Any

from controller.services import storage_views, views
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant

ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def aad(access_key_id: str) -> str:
    return f"s3-credential:{access_key_id}"


def new_access_key_id() -> str:
    return "TCAK" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(16))


async def create_credential(rt: Runtime, rc: RequestContext) -> tuple[dict[str, Any], bool]:
    """Only users (API key or login) hold S3 keys: they are bound to the caller's user and tenant."""
    if not rc.caller.user_id:
        raise ServiceError(403, "forbidden", "S3 credentials belong to a user; call this as a user")
    access_key_id = new_access_key_id()
    secret = secrets.token_urlsafe(30)
    args = {"access_key_id": access_key_id, "tenant_id": rc.caller.tenant_id, "user_id": rc.caller.user_id,
            "ciphertext": rt.secretbox.encrypt(secret, aad(access_key_id))}
    out = await rt.propose(rc, "s3key.create", args, action="s3.credentials.create", target=access_key_id,
                           tenant_id=rc.caller.tenant_id)
    if out.replayed:  # the secret of the first answer is not kept in the clear anywhere: decrypt it again
        with rt.view() as data:
            record = data.s3_credentials.get(out.result["access_key_id"])
            if record is None:
                raise ServiceError(409, "conflict", "that access key was deleted meanwhile")
            secret = rt.secretbox.decrypt(record["secret_ciphertext"], aad(record["access_key_id"]))
    return {**storage_views.s3_key(out.result), "secret_access_key": secret}, out.replayed


def _visible(rc: RequestContext, record: dict[str, Any]) -> bool:
    """Admins see their tenant's keys; everyone else their own."""
    if record["tenant_id"] != rc.caller.tenant_id or record.get("internal"):
        return False
    return rc.caller.role == "admin" or record["user_id"] == rc.caller.user_id


async def list_credentials(rt: Runtime, rc: RequestContext, limit: int | None,
                           marker: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        items, nxt = views.page(data.s3_credentials, limit, marker, keep=lambda r: _visible(rc, r))
        return {"items": [storage_views.s3_key(r) for r in items], "next_marker": nxt}


async def delete_credential(rt: Runtime, rc: RequestContext, access_key_id: str) -> None:
    await rt.consistent(rc)
    args: dict[str, Any] = {"access_key_id": access_key_id, "tenant_id": rc.caller.tenant_id}
    if rc.caller.role != "admin":
        args["user_id"] = rc.caller.user_id
    await rt.propose(rc, "s3key.delete", args, action="s3.credentials.delete", target=access_key_id,
                     tenant_id=rc.caller.tenant_id)


async def list_buckets(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                       tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        items, nxt = views.page(data.buckets, limit, marker, keep=lambda b: b["tenant_id"] == tenant_id)
        return {"items": [storage_views.bucket(b) for b in items], "next_marker": nxt}
