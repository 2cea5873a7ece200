"""Controller -> agent calls (stats, exec, console, logs, interactive sessions) over mutual TLS with the
controller's certificate.

The agent is verified by the DNS name in its certificate (``<host id>.host.thecloud``), so a controller
talks to exactly the host it means, whatever address that host advertised."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack

from controller.services.errors import ServiceError
from shared import pki

MSGPACK = "application/msgpack"
ERROR_HEADER = "X-Agent-Error"  # the agent's error message, for answers whose body a client does not read
SESSION_HEARTBEAT = 30.0
AgentWebSocket = aiohttp.ClientWebSocketResponse


class MutualTlsAgentClient:
    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session

    async def call(self, address: str, host_id: str, method: str, path: str, body: dict[str, Any] | None = None,
                   seconds: float = 30.0) -> dict[str, Any]:
        data = msgpack.packb(body, use_bin_type=True) if body is not None else None
        try:
            async with self._client().request(method, f"https://{address}{path}", data=data,
                                              headers={"Content-Type": MSGPACK},
                                              server_hostname=pki.host_dns_name(host_id),
                                              timeout=aiohttp.ClientTimeout(total=seconds + 10)) as response:
                raw = await response.read()
                if response.status >= 400:
                    detail = msgpack.unpackb(raw, raw=False) if response.content_type == MSGPACK else {}
                    message = detail.get("error", raw.decode(errors="replace")[:300]) if isinstance(detail, dict) \
                        else str(detail)
                    raise ServiceError(response.status if response.status < 500 else 502, "agent_error",
                                       f"agent: {message}")
                result: dict[str, Any] = msgpack.unpackb(raw, raw=False)
                return result
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceError(502, "agent_unreachable", f"cannot reach the agent at {address}: {exc}") from None

    async def stream(self, address: str, host_id: str, path: str) -> AsyncIterator[bytes]:
        try:
            async with self._client().get(f"https://{address}{path}", server_hostname=pki.host_dns_name(host_id),
                                          timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as response:
                if response.status >= 400:
                    raise ServiceError(502, "agent_error", f"agent answered {response.status}")
                async for chunk in response.content.iter_any():
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceError(502, "agent_unreachable", f"cannot reach the agent at {address}: {exc}") from None

    async def websocket(self, address: str, host_id: str, path: str) -> AgentWebSocket:
        """An interactive session on the agent (see agent.sessions); a refused upgrade raises ServiceError with
        the agent's status (409 ``not_supported`` when the driver cannot do it) and message."""
        try:
            return await self._client().ws_connect(f"wss://{address}{path}", server_hostname=pki.host_dns_name(host_id),
                                                   heartbeat=SESSION_HEARTBEAT, max_msg_size=1024 * 1024,
                                                   timeout=aiohttp.ClientWSTimeout(ws_close=10))
        except aiohttp.WSServerHandshakeError as exc:
            message = (exc.headers.get(ERROR_HEADER) if exc.headers else None) or f"answered {exc.status} {exc.message}"
            if exc.status >= 500 or exc.status < 400:
                raise ServiceError(502, "agent_error", f"agent: {message}") from None
            raise ServiceError(exc.status, "not_supported" if exc.status == 409 else "agent_error",
                               f"agent: {message}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceError(502, "agent_unreachable", f"cannot reach the agent at {address}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
