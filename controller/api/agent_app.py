"""The agents' listener: mutual TLS, msgpack bodies. Each agent proves its host id with its certificate."""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from aiohttp import web

from controller.api.appkeys import RUNTIME
from controller.api.errors import error_response
from controller.services import agent_link
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.store.base import StoreUnavailable
from shared import pki

log = logging.getLogger("thecloud.agent_api")
MSGPACK = "application/msgpack"
MAX_BODY_BYTES = 8 * 1024 * 1024


def _host_id(request: web.Request) -> str:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    name = pki.peer_common_name(ssl_object.getpeercert() if ssl_object else None)
    if not name or not name.startswith(pki.HOST_CN_PREFIX):
        raise ServiceError(403, "forbidden", "a host certificate is required")
    return name[len(pki.HOST_CN_PREFIX):]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(await request.read(), raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ServiceError(400, "bad_request", f"body is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise ServiceError(400, "bad_request", "body must be a msgpack map")
    return body


def _packed(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgpack.packb(data, use_bin_type=True), content_type=MSGPACK)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ServiceError as err:
        return error_response(err.status, err.code, err.message, "agent")
    except agent_link.NotLeader as exc:
        return error_response(421, "not_leader", f"send this to the leader at {exc.leader_agent_address}",
                              "agent", {"X-Leader": exc.leader_agent_address or ""})
    except StoreUnavailable as err:
        return error_response(503, "unavailable", err.message, "agent", {"Retry-After": "1"})


async def heartbeat(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    return _packed(await agent_link.heartbeat(request.app[RUNTIME], host_id, await _body(request)))


async def desired(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    try:
        after = int(request.query.get("after", "-1"))
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        raise ServiceError(400, "bad_request", "after must be an integer and wait a number") from None
    return _packed(await agent_link.desired(request.app[RUNTIME], host_id, after, wait))


async def report(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    body = await _body(request)
    reports = body.get("instances")
    if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
        raise ServiceError(400, "bad_request", "instances must be a list of maps")
    return _packed(await agent_link.report(request.app[RUNTIME], host_id, reports))


def build_agent_app(rt: Runtime) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = rt
    app.router.add_post("/agent/v1/heartbeat", heartbeat)
    app.router.add_get("/agent/v1/desired", desired)
    app.router.add_post("/agent/v1/report", report)
    return app
