"""Controller -> controller blob copies (image replication) over mutual TLS with the controller's certificate.

The peer is verified as a controller (``controller.thecloud`` in its certificate), whatever address it
advertised; a peer that lacks the blob may redirect (307) to one that holds it, which is followed once."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp

from controller.services.errors import ServiceError
from shared import pki

CHUNK = 1 << 20
READ_TIMEOUT = 60.0


class PeerBlobClient:
    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=4))
        return self._session

    async def fetch(self, address: str, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes from the controller whose agent listener is at ``address``."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=READ_TIMEOUT)
        target = address
        for _ in range(2):
            try:
                async with self._client().get(f"https://{target}/agent/v1/images/{sha256}", allow_redirects=False,
                                              server_hostname=pki.CONTROLLER_NAME, timeout=timeout) as response:
                    if response.status == 307 and target == address:
                        target = urlsplit(response.headers.get("Location", "")).netloc or address
                        continue
                    if response.status != 200:
                        raise ServiceError(502, "peer_error", f"controller {target} answered {response.status} "
                                                              f"for blob {sha256}")
                    async for chunk in response.content.iter_chunked(CHUNK):
                        yield chunk
                    return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise ServiceError(502, "peer_unreachable", f"cannot copy blob {sha256} from {target}: "
                                                            f"{exc or type(exc).__name__}") from None
        raise ServiceError(502, "peer_error", f"controller {address} redirected blob {sha256} in a loop")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
