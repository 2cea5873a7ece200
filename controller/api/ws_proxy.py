"""Pipes a client's WebSocket to an agent's (interactive exec and console): frames pass through unchanged both
ways (see agent.sessions for what they mean); when either side closes, so does the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

log = logging.getLogger("thecloud.api.sessions")

HEARTBEAT = 30.0  # seconds between pings to the client: a vanished client is noticed
MAX_FRAME = 1024 * 1024
_DATA = (WSMsgType.BINARY, WSMsgType.TEXT)


def wants_websocket(request: web.Request) -> bool:
    return bool(web.WebSocketResponse().can_prepare(request).ok)


async def _forward(source: Any, sink: Any) -> None:
    async for msg in source:
        if msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type not in _DATA:
            break


async def pipe(request: web.Request, agent: aiohttp.ClientWebSocketResponse, request_id: str) -> web.WebSocketResponse:
    """Upgrades the client's request and pipes it to ``agent`` until one of them ends; closes both."""
    client = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
    client.headers["X-Request-Id"] = request_id
    try:
        await client.prepare(request)
        down = asyncio.create_task(_forward(agent, client))
        up = asyncio.create_task(_forward(client, agent))
        try:
            await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (down, up):
                task.cancel()
            for task in (down, up):
                try:
                    await task
                except (asyncio.CancelledError, ConnectionError):
                    pass
                except Exception:
                    log.exception("session pipe failed")
        if down.done() and not down.cancelled() and agent.close_code not in (None, aiohttp.WSCloseCode.OK):
            # the agent went away without its last word (the exit code)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.send_str(json.dumps({"error": f"lost the session on the agent "
                                                           f"(close code {agent.close_code})"}))
        await client.close()
    except ConnectionError as e:
        log.info("session connection lost: %s", e)
    finally:
        await agent.close()
    return client
