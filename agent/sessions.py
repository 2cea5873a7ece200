"""A driver Session served as a WebSocket (the agent's exec/ws and console/ws routes).

Frames, the same on the controller's public routes (the controller passes them through):
- binary, client -> agent: input (the process's stdin, the console's keyboard);
- binary, agent -> client: output (stdout and stderr as the process wrote them, the console's screen);
- text, client -> agent, JSON: ``{"eof": true}`` ends the input (the process reads end-of-file),
  ``{"resize": {"rows": R, "cols": C}}`` sets a tty's size; anything else is ignored;
- text, agent -> client, JSON, last: ``{"exit_code": N}`` when the process ended (``null`` for a console or an
  unknown status), or ``{"error": "..."}`` when the session broke; then the agent closes the WebSocket.
Closing the WebSocket from the client side closes the session (and kills a process that still runs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from agent.drivers.base import DriverError, Session

log = logging.getLogger("thecloud.agent.sessions")

HEARTBEAT = 30.0  # seconds between pings: a vanished peer is noticed
MAX_FRAME = 1024 * 1024


def control(text: str) -> dict[str, Any]:
    """A client's text frame as a control message ({} when it is not one)."""
    try:
        message = json.loads(text)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


async def _apply(session: Session, message: dict[str, Any]) -> None:
    if message.get("eof") is True:
        await session.close_stdin()
    size = message.get("resize")
    if isinstance(size, dict):
        rows, cols = size.get("rows"), size.get("cols")
        if isinstance(rows, int) and isinstance(cols, int) and 0 < rows < 10_000 and 0 < cols < 10_000:
            await session.resize(rows, cols)


async def _input(ws: web.WebSocketResponse, session: Session) -> None:
    async for msg in ws:
        try:
            if msg.type == WSMsgType.BINARY:
                await session.send(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await _apply(session, control(msg.data))
        except DriverError:
            pass  # the process is gone: its output ends and the exit code follows


async def _output(ws: web.WebSocketResponse, session: Session) -> None:
    try:
        async for chunk in session:
            await ws.send_bytes(chunk)
    except DriverError as e:
        await ws.send_str(json.dumps({"error": str(e)}))
        return
    await ws.send_str(json.dumps({"exit_code": session.exit_code}))


async def serve(request: web.Request, session: Session) -> web.WebSocketResponse:
    """Upgrades the request and pipes it to ``session`` until either side ends; always closes the session."""
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
    try:
        await ws.prepare(request)
        output = asyncio.create_task(_output(ws, session))
        reader = asyncio.create_task(_input(ws, session))
        try:
            await asyncio.wait({output, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (output, reader):
                task.cancel()
            for task in (output, reader):
                try:
                    await task
                except (asyncio.CancelledError, ConnectionError):
                    pass
                except Exception:
                    log.exception("session pump failed")
        await ws.close()
    except ConnectionError as e:
        log.info("session connection lost: %s", e)
    finally:
        await session.close()
    return ws


def wants_websocket(request: web.Request) -> bool:
    return bool(web.WebSocketResponse().can_prepare(request).ok)
