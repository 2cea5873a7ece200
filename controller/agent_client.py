"""Controller -> agent calls (stats, exec, console, logs) over mutual TLS with the controller's certificate.

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

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
