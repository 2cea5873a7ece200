"""A host daemon's link to the controllers (agent, netd, storaged): mutual TLS, msgpack, failover.

Writes must reach the leader; a follower answers 421 with the leader's agent address, which we follow.
Unreachable controllers are skipped in turn. When no controller answers, callers wait ``backoff()`` before the
next round: exponential with jitter, so thousands of hosts that lost the same controller do not all reconnect at
the same instant. Nothing here ever touches running instances.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgpack

from shared import pki
from shared.hostidentity import HostIdentity

log = logging.getLogger("thecloud.hostlink")
MSGPACK = "application/msgpack"
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_READ_TIMEOUT = 60.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
T = TypeVar("T")


class LinkError(Exception):
    """No controller answered usefully (``status`` None), or one refused the request: ``status`` is its HTTP
    status and ``code`` its error code. The agent keeps what runs and tries again later."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HostRejected(LinkError):
    """The cluster no longer knows this host (it was deleted): nothing will be accepted from it."""


class ControllerLink:
    def __init__(self, endpoints: list[str], ssl_context: ssl.SSLContext) -> None:
        if not endpoints:
            raise LinkError("no controller endpoints known; give --controller or re-join")
        self.endpoints = list(dict.fromkeys(endpoints))
        self._current = 0
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._failed_rounds = 0

    def backoff(self) -> float:
        """Seconds to wait before the next round after ``call`` raised: doubles per failed round up to
        BACKOFF_MAX, with "equal jitter" (half fixed, half random); back to the start after a success."""
        ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self._failed_rounds, 16))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security

    @property
    def current(self) -> str:
        return self.endpoints[self._current % len(self.endpoints)]

    def learn(self, endpoints: list[str]) -> None:
        """Adds controllers the cluster told us about (membership changes)."""
        for endpoint in endpoints:
            if endpoint not in self.endpoints:
                self.endpoints.append(endpoint)

    def follow(self, answer: Elsewhere) -> str | None:
        """Moves on after an answer that was not the result: to the leader named (returned), else the next one."""
        if answer.leader:
            self.learn([answer.leader])
            self._current = self.endpoints.index(answer.leader)
            return answer.leader
        self._current += 1
        return None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=8))
        return self._session

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   seconds: float = 10.0) -> dict[str, Any]:
        """One request, trying each controller at most once (plus one leader redirect)."""
        errors: list[str] = []
        attempts = len(self.endpoints) + 1
        redirect: str | None = None
        for _ in range(attempts):
            endpoint = redirect or self.current
            redirect = None
            try:
                status, headers, payload = await self._send(endpoint, method, path, body, seconds)
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
                errors.append(f"{endpoint}: {exc.__class__.__name__}: {exc}")
                self._current += 1
                continue
            answer = judge(endpoint, method, path, status, headers.get("X-Leader", ""), payload)
            if isinstance(answer, dict):
                self._failed_rounds = 0
                return answer
            errors.append(answer.reason)
            redirect = self.follow(answer)
        self._failed_rounds += 1
        raise LinkError("no controller answered: " + "; ".join(errors[-3:]))

    async def download(self, path: str, sink: Callable[[AsyncIterator[bytes]], Awaitable[T]],
                       read_timeout: float = DOWNLOAD_READ_TIMEOUT) -> tuple[T, str]:
        """A large body (an image blob) from whichever controller has it: the current one first, then the
        holders it redirects to, then every other controller. Returns ``sink``'s result and the source.

        ``sink`` consumes the body as it arrives; if it fails (a copy that does not verify), the next
        controller is tried."""
        candidates = list(dict.fromkeys([self.current, *self.endpoints]))
        tried: set[str] = set()
        errors: list[str] = []
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=read_timeout)
        while candidates:
            endpoint = candidates.pop(0)
            if endpoint in tried:
                continue
            tried.add(endpoint)
            try:
                async with self._client().get(f"https://{endpoint}{path}", allow_redirects=False,
                                              server_hostname=pki.CONTROLLER_NAME, timeout=timeout) as response:
                    if response.status in (301, 302, 307, 308):
                        holders = [urlsplit(response.headers.get("Location", "")).netloc,
                                   *response.headers.get("X-Holders", "").split(",")]
                        candidates[:0] = [h for h in dict.fromkeys(holders) if h and h not in tried]
                        continue
                    if response.status != 200:
                        errors.append(f"{endpoint}: {response.status}")
                        continue
                    return await sink(response.content.iter_chunked(DOWNLOAD_CHUNK)), endpoint
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
                errors.append(f"{endpoint}: {exc.__class__.__name__}: {exc}")
            except Exception as exc:  # the sink refused what this controller sent: try another one
                errors.append(f"{endpoint}: {exc}")
        raise LinkError(f"no controller could send {path}: " + ("; ".join(errors[-4:]) or "none known"))

    async def _send(self, endpoint: str, method: str, path: str, body: dict[str, Any] | None,
                    seconds: float) -> tuple[int, dict[str, str], Any]:
        data = msgpack.packb(body, use_bin_type=True) if body is not None else None
        async with self._client().request(method, f"https://{endpoint}{path}", data=data,
                                          headers={"Content-Type": MSGPACK}, server_hostname=pki.CONTROLLER_NAME,
                                          timeout=aiohttp.ClientTimeout(total=seconds, sock_connect=3)) as response:
            raw = await response.read()
            if response.content_type == MSGPACK:
                payload = msgpack.unpackb(raw, raw=False)
            else:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = {"error": {"message": raw.decode(errors="replace")[:300]}}
            return response.status, dict(response.headers), payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Elsewhere:
    """The controller did not answer the request itself: ask ``leader`` (if named) or the next controller."""

    reason: str
    leader: str = ""


def judge(endpoint: str, method: str, path: str, status: int, leader: str, payload: Any) -> dict[str, Any] | Elsewhere:
    """What a controller's answer means (shared by every client of the agent protocol): the result, where to
    ask instead (421 from a follower, 503 without a quorum), or a refusal raised as LinkError/HostRejected."""
    if status == 421:
        return Elsewhere(f"{endpoint}: not the leader", leader)
    if status == 503:
        return Elsewhere(f"{endpoint}: unavailable ({_message(payload)})")
    error = payload.get("error") if isinstance(payload, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    if status == 403 and code == "unknown_host":
        raise HostRejected(_message(payload), status, code)
    if status >= 400:
        raise LinkError(f"{endpoint} refused {method} {path} ({status}): {_message(payload)}", status, code)
    if not isinstance(payload, dict):
        raise LinkError(f"{endpoint} answered {method} {path} with a non-map body")
    return payload


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error:
            return str(error)
    return str(payload)[:300]


def link_for(identity: HostIdentity, controllers: list[str] | None = None) -> ControllerLink:
    """The link a host daemon uses: the host's own certificate, to the given controllers or the known ones."""
    return ControllerLink(controllers or identity.controllers,
                          pki.client_context(identity.cert_file, identity.key_file, identity.ca_file))
