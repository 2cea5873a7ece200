"""The agents' listener: mutual TLS, msgpack bodies. Each agent proves its host id with its certificate."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import web

from controller.api import storage_agent
from controller.api.appkeys import RUNTIME
from controller.api.errors import error_response
from controller.services import agent_link, migrations, net_agent, storage_link
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.store.base import StoreUnavailable
from shared import pki
from shared.blobs import valid_sha256

log = logging.getLogger("thecloud.agent_api")
MSGPACK = "application/msgpack"
MAX_BODY_BYTES = 8 * 1024 * 1024


# A connection's verified peer never changes: its host id is read from the certificate once per connection
# (getpeercert() decodes the whole certificate, which would otherwise be repeated on every heartbeat).
_PEERS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _host_id(request: web.Request) -> str:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        raise ServiceError(403, "forbidden", "a host certificate is required")
    host_id = _PEERS.get(ssl_object)
    if host_id is None:
        name = pki.peer_common_name(ssl_object.getpeercert())
        if not name or not name.startswith(pki.HOST_CN_PREFIX):
            raise ServiceError(403, "forbidden", "a host certificate is required")
        host_id = _PEERS[ssl_object] = name[len(pki.HOST_CN_PREFIX):]
    return host_id


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


def _host_or_controller(request: web.Request) -> str:
    """Image blobs are for hosts (their agents' caches) and for the other controllers (replication)."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    name = pki.peer_common_name(ssl_object.getpeercert() if ssl_object else None)
    if not name or not (name.startswith(pki.HOST_CN_PREFIX) or name == pki.CONTROLLER_CN):
        raise ServiceError(403, "forbidden", "a host or controller certificate is required")
    return name


async def image_blob(request: web.Request) -> web.StreamResponse:
    """Streams a blob this controller holds; else redirects (307) to a controller that holds it."""
    _host_or_controller(request)
    rt = request.app[RUNTIME]
    sha = request.match_info["sha256"]
    if not valid_sha256(sha):
        raise ServiceError(400, "bad_request", "not a sha256")
    if rt.images is not None and rt.images.has(sha):
        return web.FileResponse(rt.images.path(sha), headers={"Content-Type": "application/octet-stream",
                                                              "X-Sha256": sha})
    with rt.view() as data:
        blob = data.image_blobs.get(sha)
        me = rt.store.status().self_address
        holders = [str(a) for h in (blob or {}).get("holders", ())
                   if h != me and (a := data.members.get(h, {}).get("agent_address"))]
    if not holders:
        raise ServiceError(404, "not_found", f"no controller holds blob {sha}")
    raise web.HTTPTemporaryRedirect(f"https://{holders[0]}/agent/v1/images/{sha}",
                                    headers={"X-Holders": ",".join(holders)})


async def heartbeat(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    return _packed(await agent_link.heartbeat(request.app[RUNTIME], host_id, await _body(request)))


Watch = Callable[[Runtime, str, int, float], Awaitable[dict[str, Any]]]


def long_poll(watch: Watch) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A host's long-poll (agent desired state, netd's network, storaged's volumes): ``?after=REV&wait=SECONDS``,
    answered as soon as the host's document is newer than ``after``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        host_id = _host_id(request)
        try:
            after = int(request.query.get("after", "-1"))
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise ServiceError(400, "bad_request", "after must be an integer and wait a number") from None
        return _packed(await watch(request.app[RUNTIME], host_id, after, wait))

    return handle


async def report(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    body = await _body(request)
    reports = body.get("instances")
    if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
        raise ServiceError(400, "bad_request", "instances must be a list of maps")
    return _packed(await agent_link.report(request.app[RUNTIME], host_id, reports))


async def migration_report(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    return _packed(await migrations.report(request.app[RUNTIME], host_id, await _body(request)))


async def network_report(request: web.Request) -> web.StreamResponse:
    host_id = _host_id(request)
    return _packed(await net_agent.report(request.app[RUNTIME], host_id, await _body(request)))


def build_agent_app(rt: Runtime) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = rt
    app.router.add_post("/agent/v1/heartbeat", heartbeat)
    app.router.add_get("/agent/v1/desired", long_poll(agent_link.desired))
    app.router.add_post("/agent/v1/report", report)
    app.router.add_post("/agent/v1/migration", migration_report)
    app.router.add_get("/agent/v1/network", long_poll(net_agent.network))
    app.router.add_get("/agent/v1/storage", long_poll(storage_link.desired))
    app.router.add_post("/agent/v1/network/report", network_report)
    app.router.add_get("/agent/v1/images/{sha256}", image_blob)
    storage_agent.add_routes(app, (_host_id, _body, _packed))
    return app
