"""Interactive sessions with an instance over WebSockets: exec (containers) and the serial console (VMs).

Everything that can go wrong before the upgrade (the instance, the caller's rights, the agent) is a normal JSON
error; after it the frames are those of agent.sessions, passed through by controller.api.ws_proxy."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from controller.api import ws_proxy
from controller.api.errors import ApiError
from controller.api.request import ApiRequest
from controller.services import sessions

MAX_COMMAND_ARGS = 256
MAX_COMMAND_CHARS = 6000  # all arguments together: the agent's request line must stay under aiohttp's 8 KiB


def _command(req: ApiRequest) -> list[str]:
    command = req.http.query.getall("command", [])
    if not command:
        raise ApiError(400, "bad_request", "give the command as query parameters command=..., one per argument")
    if len(command) > MAX_COMMAND_ARGS or sum(len(c) for c in command) > MAX_COMMAND_CHARS \
            or any("\x00" in c for c in command):
        raise ApiError(400, "bad_request", f"the command is too long (at most {MAX_COMMAND_ARGS} arguments, "
                                           f"{MAX_COMMAND_CHARS} characters) or contains NUL")
    return command


def _require_upgrade(req: ApiRequest) -> None:
    if not ws_proxy.wants_websocket(req.http):
        raise ApiError(400, "bad_request", f"{req.http.path} is a WebSocket: send a GET with 'Connection: Upgrade' "
                                           "and 'Upgrade: websocket'")


async def exec_ws(req: ApiRequest) -> web.StreamResponse:
    command = _command(req)
    tty = req.flag("tty")
    target = await sessions.find_target(req.rt, req.rc, req.path("instance"), req.query("tenant"), "exec")
    _require_upgrade(req)
    query = "?" + urlencode([("command", c) for c in command] + [("tty", "true" if tty else "false")])
    agent = await sessions.open_session(req.rt, req.rc, target, query)
    return await ws_proxy.pipe(req.http, agent, req.rc.request_id)


async def console_ws(req: ApiRequest) -> web.StreamResponse:
    target = await sessions.find_target(req.rt, req.rc, req.path("instance"), req.query("tenant"), "console")
    _require_upgrade(req)
    agent = await sessions.open_session(req.rt, req.rc, target)
    return await ws_proxy.pipe(req.http, agent, req.rc.request_id)
