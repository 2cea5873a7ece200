"""The agent's own listener (mutual TLS): controllers fetch logs, stats, exec and console output here, and open
interactive exec and console sessions (WebSockets, see agent.sessions).

Errors are msgpack ``{"error": message}`` with the message also in the ``X-Agent-Error`` header, which is all a
WebSocket client sees of a refused upgrade."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from aiohttp import web

from agent import sessions
from agent.drivers.base import Driver, DriverError, InstanceNotFound, NotSupported
from shared import pki

MSGPACK = "application/msgpack"
ERROR_HEADER = "X-Agent-Error"
MAX_COMMAND_ARGS = 256
DRIVER: web.AppKey[Driver] = web.AppKey("driver", Driver)


def _packed(data: Any, status: int = 200) -> web.Response:
    headers = None
    if status >= 400 and isinstance(data, dict) and "error" in data:
        text = " ".join(str(data["error"]).split())[:500]
        headers = {ERROR_HEADER: text.encode("ascii", "backslashreplace").decode()}
    return web.Response(status=status, body=msgpack.packb(data, use_bin_type=True), content_type=MSGPACK,
                        headers=headers)


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


def _upgrade_needed() -> web.Response:
    return _packed({"error": "this route needs a WebSocket upgrade"}, 400)


async def exec_ws(request: web.Request) -> web.StreamResponse:
    """``?command=...&command=...&tty=true|false``: the command runs once the upgrade is accepted."""
    ident = await _known(request)
    command = request.query.getall("command", [])
    if not command or len(command) > MAX_COMMAND_ARGS or any("\x00" in c for c in command):
        return _packed({"error": f"give the command as 1 to {MAX_COMMAND_ARGS} command= parameters"}, 400)
    if not sessions.wants_websocket(request):
        return _upgrade_needed()
    session = await request.app[DRIVER].exec_session(ident, command, request.query.get("tty") == "true")
    return await sessions.serve(request, session)


async def console_ws(request: web.Request) -> web.StreamResponse:
    ident = await _known(request)
    if not sessions.wants_websocket(request):
        return _upgrade_needed()
    return await sessions.serve(request, await request.app[DRIVER].console_session(ident))


def build_agent_server(driver: Driver) -> web.Application:
    app = web.Application(middlewares=[_controllers_only])
    app[DRIVER] = driver
    app.router.add_get("/agent/v1/instances/{instance}/stats", stats)
    app.router.add_get("/agent/v1/instances/{instance}/console", console)
    app.router.add_post("/agent/v1/instances/{instance}/exec", exec_)
    app.router.add_get("/agent/v1/instances/{instance}/logs", logs)
    app.router.add_get("/agent/v1/instances/{instance}/exec/ws", exec_ws)
    app.router.add_get("/agent/v1/instances/{instance}/console/ws", console_ws)
    return app
