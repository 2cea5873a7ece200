"""Interactive exec for the docker driver.

``POST /exec/{id}/start`` with ``Upgrade: tcp`` hijacks the HTTP connection: after the 101 answer it carries the
process's stdin one way and its output the other (multiplexed with 8-byte frame headers unless the exec has a
tty). docker-py sends that request in a worker thread; the session then owns a non-blocking duplicate of the
connection's socket and pumps it on the event loop with ``loop.sock_recv``/``sock_sendall``, so no thread waits on
a session. Half-closing the socket (``close_stdin``) is how docker learns that stdin ended.

Only an engine reached over a unix socket or plain TCP can be hijacked this way (not TLS or ssh): elsewhere
``exec_session`` raises NotSupported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import docker

from agent.drivers.base import DriverError, NotSupported, Session

Call = Callable[[Callable[[docker.APIClient], Any]], Awaitable[Any]]

_READ_SIZE = 65536
_EXIT_WAIT = 5.0  # seconds to wait for docker to report the exit code after the output ended
_KILL_WAIT = 2.0  # seconds to wait for a process that was closed before it even started


class Demux:
    """Splits docker's multiplexed stream (``[stream, 0, 0, 0, size (4 bytes, big endian)] payload``) into payloads;
    stdout and stderr stay interleaved, in the order the process wrote them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out = []
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            if size:
                out.append(bytes(self._buffer[8 : 8 + size]))
            del self._buffer[: 8 + size]
        return out


def _hijack(api: docker.APIClient, exec_id: str, tty: bool) -> tuple[Any, socket.socket, bytes]:
    """Starts the exec on a hijacked connection: (the HTTP response, a non-blocking duplicate of its socket, what
    was read past the 101 answer's headers already)."""
    response = api._post_json(api._url("/exec/{0}/start", exec_id), headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                              data={"Tty": tty, "Detach": False}, stream=True)
    try:
        api._raise_for_status(response)
        try:
            buffered = response.raw._fp.fp  # http.client's buffered reader over the connection's socket
            sock = buffered.raw._sock
        except AttributeError:
            sock = None
        if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
            raise NotSupported("interactive exec needs the docker engine on a unix socket or plain TCP")
        sock.setblocking(False)
        # Reading the headers may have read the first output too: take it from the buffer (non-blocking now, so
        # peek never waits), then use the socket itself.
        early = bytes(buffered.peek() or b"")
        dup = sock.dup()
        dup.setblocking(False)
        return response, dup, early
    except BaseException:
        response.close()
        raise


class DockerExecSession(Session):
    def __init__(self, call: Call, exec_id: str, tty: bool, response: Any, sock: socket.socket, early: bytes) -> None:
        self._call = call
        self._exec_id = exec_id
        self._tty = tty
        self._response = response  # the HTTP response owning the original socket: closed with the session
        self._sock = sock
        self._early = early
        self._demux = None if tty else Demux()
        self._reading = False
        self._ended = False
        self._closed = False
        self._released = False

    @classmethod
    async def start(cls, call: Call, exec_id: str, tty: bool) -> DockerExecSession:
        response, sock, early = await call(lambda api: _hijack(api, exec_id, tty))
        return cls(call, exec_id, tty, response, sock, early)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._ended or self._reading:
            return
        self._reading = True
        loop = asyncio.get_running_loop()
        data, self._early = self._early, b""
        try:
            while True:
                if data:
                    for chunk in self._demux.feed(data) if self._demux is not None else [data]:
                        yield chunk
                if self._closed:
                    return
                try:
                    data = await loop.sock_recv(self._sock, _READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    break
            self._ended = True
            if not self._closed:
                self.exit_code = await self._exit_code()
        finally:
            self._reading = False
            if self._closed:
                self._release()

    async def _inspect(self) -> dict[str, Any]:
        try:
            info: dict[str, Any] = await self._call(lambda api: api.exec_inspect(self._exec_id))
            return info
        except (DriverError, docker.errors.NotFound):
            return {}

    async def _exit_code(self) -> int | None:
        """docker's record of the exit code, which may lag behind the end of the output by a moment."""
        deadline = time.monotonic() + _EXIT_WAIT
        while True:
            info = await self._inspect()
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if not info or time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def _kill(self) -> None:
        """Best effort: docker has no API to end an exec, so its process is killed by pid, which works when
        dockerd runs on this machine. A process closed right after the start may not run yet: wait a moment."""
        deadline = time.monotonic() + _KILL_WAIT
        while True:
            info = await self._inspect()
            pid = int(info.get("Pid") or 0)
            if info.get("Running") and pid > 0:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                return
            if not info or info.get("ExitCode") is not None or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def send(self, data: bytes) -> None:
        if self._ended or self._closed:
            raise DriverError("the session has ended")
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        except OSError as e:
            raise DriverError(f"cannot write to the process: {e}") from e

    async def close_stdin(self) -> None:
        if not self._closed:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    async def resize(self, rows: int, cols: int) -> None:
        if self._tty and not self._closed:
            with contextlib.suppress(DriverError, docker.errors.NotFound):
                await self._call(lambda api: api.exec_resize(self._exec_id, height=rows, width=cols))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # wakes a pending read: it sees the end
            self._sock.shutdown(socket.SHUT_RDWR)
        if not self._ended:
            await self._kill()
        if not self._reading:
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._sock.close()
        with contextlib.suppress(Exception):
            self._response.close()
