"""Announces this controller's API on the LAN with zeroconf (``_thecloud._tcp.local.``), so an agent can
join without being told where the controllers are. Bound to one interface address, never 0.0.0.0."""

from __future__ import annotations

import socket

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

SERVICE_TYPE = "_thecloud._tcp.local."


class Advertiser:
    def __init__(self, address: str, api: str, node_id: str, tls: bool) -> None:
        self._address = address
        port = int(api.rsplit(":", 1)[1])
        self._info = ServiceInfo(
            SERVICE_TYPE, f"thecloud-{node_id[:12]}.{SERVICE_TYPE}", port=port,
            addresses=[socket.inet_aton(address)], server=f"thecloud-{node_id[:12]}.local.",
            properties={"scheme": "https" if tls else "http", "node": node_id})
        self._zc: AsyncZeroconf | None = None

    async def start(self) -> None:
        self._zc = AsyncZeroconf(interfaces=[self._address], ip_version=IPVersion.V4Only)
        await self._zc.async_register_service(self._info, allow_name_change=True)

    async def stop(self) -> None:
        if self._zc is not None:
            await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()
