"""The agent's own listener (mutual TLS): controllers fetch logs, stats, exec and console output here."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from aiohttp import web

from agent.drivers.base import Driver, DriverError, InstanceNotFound, NotSupported
from shared import pki

MSGPACK = "application/msgpack"
DRIVER: web.AppKey[Driver] = web.AppKey("driver", Driver)


def _packed(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgpack.packb(data, use_bin_type=True), content_type=MSGPACK)


@web.middleware
async def _controllers_only(request: web.Request, handler: Any) -> web.StreamResponse:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if pki.peer_common_name(ssl_object.getpeercert() if ssl_object else None) != pki.CONTROLLER_CN:
        return _packed({"error": "a controller certificate is required"}, 403)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except InstanceNotFound as exc:
        return _packed({"error": str(exc)}, 404)
    except NotSupported as exc:
        return _packed({"error": str(exc)}, 409)
    except DriverError as exc:
        return _packed({"error": str(exc)}, 422)


async def _known(request: web.Request) -> str:
    ident = request.match_info["instance"]
    if ident not in {i.id for i in await request.app[DRIVER].list_instances()}:
        raise InstanceNotFound(f"instance {ident} is not on this host")
    return ident


async def stats(request: web.Request) -> web.StreamResponse:
    return _packed(await request.app[DRIVER].stats(await _known(request)))


async def console(request: web.Request) -> web.StreamResponse:
    output = await request.app[DRIVER].console(await _known(request))
    return _packed({"output": output.decode(errors="replace")})


async def exec_(request: web.Request) -> web.StreamResponse:
    ident = await _known(request)
    body = msgpack.unpackb(await request.read(), raw=False)
    command = body.get("command") if isinstance(body, dict) else None
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        return _packed({"error": "command must be a non-empty list of strings"}, 400)
    result = await request.app[DRIVER].exec(ident, command, float(body.get("timeout", 30.0)))
    return _packed({"exit_code": result.exit_code, "output": result.output.decode(errors="replace")})


async def logs(request: web.Request) -> web.StreamResponse:
    ident = await _known(request)
    tail_raw = request.query.get("tail")
    tail = int(tail_raw) if tail_raw and tail_raw.isdigit() else None
    follow = request.query.get("follow") == "true"
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    chunks = request.app[DRIVER].logs(ident, tail, follow)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    finally:
        with contextlib.suppress(Exception):
            await chunks.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


def build_agent_server(driver: Driver) -> web.Application:
    app = web.Application(middlewares=[_controllers_only])
    app[DRIVER] = driver
    app.router.add_get("/agent/v1/instances/{instance}/stats", stats)
    app.router.add_get("/agent/v1/instances/{instance}/console", console)
    app.router.add_post("/agent/v1/instances/{instance}/exec", exec_)
    app.router.add_get("/agent/v1/instances/{instance}/logs", logs)
    return app
