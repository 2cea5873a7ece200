"""A running VM's serial console, interactively: keystrokes go to the pty QEMU made for the serial port, output
comes from the console log that virtlogd writes.

The domain XML declares the serial port as ``type='pty'`` with a ``<log>``; the live XML names the pty
(``/dev/pts/N``). The agent opens it (it runs where QEMU runs, as root or a user that may open QEMU's ptys), in raw
mode and non-blocking, with ``loop.add_reader``: no thread waits on a console.

Why output from the log and not the pty: QEMU only notices a reader on its pty about once a second and drops
what the guest prints meanwhile, while the log has every byte in order. So a session starts with the last
:data:`REPLAY_BYTES` of the log (the screen as it was) and then follows it (polled every :data:`POLL` seconds,
following virtlogd's rotation), with nothing lost or doubled; what the pty gives is read and dropped, so that
QEMU never waits for it. (The log is a local file: reading what is there never waits.) Without a log file the
pty's output is used instead. The session ends when QEMU closes the pty (the domain stopped). One session per
pty at a time: the first one's input would be mixed with another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import tty
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

from agent.drivers.base import DriverError, Session

logger = logging.getLogger("thecloud.agent.console")

REPLAY_BYTES = 4096
POLL = 0.05  # seconds between looks at the log
_PTY_RE = re.compile(r"/dev/pts/[0-9]+")
_READ_SIZE = 65536
_OPEN: set[str] = set()  # ptys with a session in this process


def pty_path(live_xml: str) -> str | None:
    """The serial console's pty in a running domain's XML (``<console tty=...>`` or the serial port's source)."""
    try:
        root = ET.fromstring(live_xml)  # noqa: S314 - from the local libvirtd
    except ET.ParseError:
        return None
    for element in [*root.findall("./devices/console"), *root.findall("./devices/serial")]:
        if element.get("type") != "pty":
            continue
        source = element.find("source")
        for path in (element.get("tty"), source.get("path") if source is not None else None):
            if path and _PTY_RE.fullmatch(path):
                return path
    return None


class _LogFollower:
    """Reads what is appended to a log file, from the last REPLAY_BYTES on (starting at a line), across rotation
    (the path then names a new file: the old one is read to its end first)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "rb")  # held for the session's lifetime: close()
        size = os.fstat(self._file.fileno()).st_size
        start = max(0, size - REPLAY_BYTES)
        self._file.seek(start)
        if start > 0:
            self._file.readline()  # from the next whole line

    def read(self) -> bytes:
        data = self._file.read(_READ_SIZE)
        if data:
            return data
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino:  # rotated: on to the new file
                self._file.close()
                self._file = open(self.path, "rb")
                return self._file.read(_READ_SIZE)
        return b""

    def close(self) -> None:
        self._file.close()


class PtyConsoleSession(Session):
    def __init__(self, path: str, fd: int, log: _LogFollower | None) -> None:
        self._path = path
        self._fd = fd
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._pty_output: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._hung_up = asyncio.Event()
        self._closed = False
        self._loop.add_reader(fd, self._readable)

    @classmethod
    def open(cls, path: str, log_path: str | None) -> PtyConsoleSession:
        if path in _OPEN:
            raise DriverError("the serial console is in use by another session")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise DriverError(f"cannot open the serial console {path}: {e.strerror}") from e
        log = None
        try:
            tty.setraw(fd)  # no echo and no line discipline between QEMU and us
            if log_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    log = _LogFollower(log_path)
            session = cls(path, fd, log)
        except BaseException:
            os.close(fd)
            if log is not None:
                log.close()
            raise
        _OPEN.add(path)
        return session

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: QEMU closed its side (the domain stopped); anything else ends it too
            if e.errno != errno.EIO:
                logger.warning("reading the serial console %s failed: %s", self._path, e)
            data = b""
        if not data:
            self._loop.remove_reader(self._fd)
            self._hung_up.set()
        elif self._log is None:
            if self._pty_output.full():  # the consumer is slow: wait for it (QEMU buffers meanwhile)
                self._loop.remove_reader(self._fd)
            self._pty_output.put_nowait(data)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._log is None:
            async for chunk in self._from_pty():
                yield chunk
            return
        while not self._closed:
            data = self._log.read()
            if data:
                yield data
                continue
            if self._hung_up.is_set():
                await asyncio.sleep(0.2)  # virtlogd may still be writing the last words
                if not self._closed and (data := self._log.read()):
                    yield data
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hung_up.wait(), POLL)

    async def _from_pty(self) -> AsyncIterator[bytes]:
        while not self._closed:
            if self._pty_output.empty() and self._hung_up.is_set():
                return
            get = asyncio.ensure_future(self._pty_output.get())
            hang_up = asyncio.ensure_future(self._hung_up.wait())
            await asyncio.wait({get, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            hang_up.cancel()
            if not get.done():
                get.cancel()
                continue
            if not self._hung_up.is_set() and not self._closed:
                self._loop.add_reader(self._fd, self._readable)  # (again, if it paused)
            yield get.result()

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._hung_up.is_set() or self._closed:
                raise DriverError("the console has closed")
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.01)  # QEMU takes input as fast as the guest's UART does
            except OSError as e:
                raise DriverError(f"cannot write to the console: {e.strerror}") from e

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hung_up.set()
        self._loop.remove_reader(self._fd)
        _OPEN.discard(self._path)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self._log is not None:
            self._log.close()
