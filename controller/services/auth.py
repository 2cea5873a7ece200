"""Authentication: API keys and JWTs checked against the local replica; login issues JWTs."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.security import passwords, tokens
from controller.services import views
from controller.services.context import Caller, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.state.command import Credential
from controller.state.data import StateData


def unauthorized(message: str = "missing, invalid, expired or revoked credentials") -> ServiceError:
    return ServiceError(401, "unauthorized", message)


def authenticate(runtime: Runtime, token: str) -> Caller:
    """The caller behind a bearer token, checked against the local replica. Raises 401."""
    now = runtime.clock()
    with runtime.view() as data:
        parsed = tokens.parse_api_key(token)
        if parsed is not None:
            key_id, secret = parsed
            key = data.keys.get(key_id)
            if key is None or key["revoked"] or not tokens.key_secret_matches(key["secret_hash"], secret):
                raise unauthorized()
            if key.get("expires_at") is not None and key["expires_at"] <= now:
                raise unauthorized("the API key has expired")
            return _caller(data, key["user_id"], {"kind": "key", "key_id": key_id, "user_id": key["user_id"]})
        claims = tokens.decode_jwt(runtime.jwt_key, token)
        if claims is None:
            raise unauthorized()
        user_id = str(claims["sub"])
        return _caller(data, user_id, {"kind": "jwt", "user_id": user_id})


async def authenticate_consistent(runtime: Runtime, token: str) -> Caller:
    """Like :func:`authenticate`, but a refusal of a well-formed credential is only final once this replica
    has applied everything committed: a key or user created through another controller moments ago, or
    committed before this controller restarted and not yet re-applied, is unknown locally until then.
    Raises 401, or StoreUnavailable (503) if the replica cannot catch up now (no leader)."""
    try:
        return authenticate(runtime, token)
    except ServiceError as err:
        if err.status != 401 or not _well_formed(runtime, token):
            raise
    await runtime.store.barrier()
    return authenticate(runtime, token)


def _well_formed(runtime: Runtime, token: str) -> bool:
    return tokens.parse_api_key(token) is not None or tokens.decode_jwt(runtime.jwt_key, token) is not None


def _caller(data: StateData, user_id: str, credential: Credential) -> Caller:
    user = data.users.get(user_id)
    if user is None or user["disabled"]:
        raise unauthorized("the user no longer exists or is disabled")
    tenant = data.tenants.get(user["tenant_id"])
    if tenant is None:
        raise unauthorized("the user's tenant no longer exists")
    return Caller(user_id=user["id"], user_name=user["name"], tenant_id=tenant["id"], tenant_name=tenant["name"],
                  role=user["role"], credential=credential)


async def login(runtime: Runtime, rc: RequestContext, username: str, password: str) -> dict[str, Any]:
    await runtime.consistent(rc)
    with runtime.view() as data:
        user_id = data.user_names.get(username)
        user = dict(data.users[user_id]) if user_id else None
    stored = user.get("password_hash") if user else None
    ok = await asyncio.to_thread(passwords.verify_password, stored, password)
    if not ok or user is None or user["disabled"]:
        await runtime.record_refusal(rc, "auth.login", username, 401)
        raise unauthorized("wrong username or password")
    with runtime.view() as data:
        caller = _caller(data, user["id"], {"kind": "password", "user_id": user["id"]})
    await runtime.record_refusal(RequestContext(rc.request_id, caller), "auth.login", username, 200)
    token, expires = tokens.issue_jwt(runtime.jwt_key, user["id"], user["tenant_id"], runtime.clock())
    return {"token": token, "token_type": "Bearer", "expires_at": views.iso(expires)}


async def whoami(runtime: Runtime, rc: RequestContext) -> dict[str, Any]:
    await runtime.consistent(rc)
    with runtime.view() as data:
        user = data.users.get(rc.caller.user_id)
        tenant = data.tenants.get(rc.caller.tenant_id)
        if user is None or tenant is None:
            raise unauthorized("the user no longer exists")
        return {"user": views.user(user), "tenant": views.tenant(tenant), "role": user["role"]}
