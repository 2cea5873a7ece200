"""Turns a Route into an aiohttp handler: authenticate, authorise by policy, read the body, call."""

from __future__ import annotations

import hashlib
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from controller.api.appkeys import RUNTIME
from controller.api.errors import ApiError
from controller.api.policy import Rule, allows
from controller.api.request import ApiRequest
from controller.api.routes import Route
from controller.services import auth
from controller.services.context import Caller, RequestContext
from controller.services.errors import ServiceError

ANONYMOUS = Caller(user_id="", user_name="anonymous", tenant_id="", tenant_name="", role="anonymous",
                   credential={"kind": "anonymous"})
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <API key or token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def make_handler(route: Route, rule: Rule) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        rt = request.app[RUNTIME]
        request_id: str = request[REQUEST_ID]
        caller = ANONYMOUS
        if not rule.public:
            try:
                caller = await auth.authenticate_consistent(rt, bearer_token(request))
            except ServiceError as err:  # every 401 names the scheme (RFC 7235)
                raise ApiError(err.status, err.code, err.message,
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
            if not allows(rule, caller.role, caller.is_cluster_admin):
                if route.audited:
                    await rt.record_refusal(RequestContext(request_id, caller), route.action, _target(request), 403)
                needed = "the cluster admin" if rule.cluster_admin else "role " + "/".join(sorted(rule.roles))
                raise ApiError(403, "forbidden", f"{route.method} {route.path} needs {needed}; "
                                                 f"you are {caller.role} in tenant {caller.tenant_name!r}")
        raw = await request.read() if (route.mutating or route.body is not None) and not route.stream_body else b""
        rc = RequestContext(request_id=request_id, caller=caller, stale=_flag(request, "stale"))
        key = request.headers.get("Idempotency-Key")
        if key is not None and route.mutating:
            if not IDEMPOTENCY_KEY_RE.match(key):
                raise ApiError(400, "bad_request", "Idempotency-Key must be 1-200 characters of [A-Za-z0-9._:-]")
            rc.idempotency_key = key
            rc.fingerprint = hashlib.sha256(f"{route.method} {request.path_qs}\n".encode() + raw).hexdigest()
        try:
            return await route.handler(ApiRequest(request, rt, rc, raw))
        except ServiceError as err:
            if route.audited and not rule.public and not err.audited:
                # refused before it became a command (tenant scope, visibility, membership): audit it too
                await rt.record_refusal(RequestContext(request_id, caller), route.action, _target(request),
                                        err.status)
            raise

    handle.__name__ = route.handler.__name__
    return handle


def _target(request: web.Request) -> str:
    """What a refused request was aimed at: its object's name/id when the path has one, else the path."""
    params = list(request.match_info.values())
    return params[-1] if params else request.path


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise ApiError(400, "bad_request", f"query parameter {name!r} must be true or false")
