"""Wake-ups when something in a directory changes (Linux inotify through ctypes; no extra package).

The spec-file source used to find a new document by polling ``stat()`` every 20 ms, 10 ms of delay on average
before a pass could start. With inotify the event loop is woken as soon as the file is renamed into place.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE


class DirWatch:
    """An inotify descriptor watching one directory; ``wait(seconds)`` returns on a change or after that long."""

    def __init__(self, directory: str) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(fd, os.fsencode(directory), MASK) < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"inotify_add_watch {directory}")
        self.fd = fd
        self._changed = asyncio.Event()
        self._reading = False

    def _on_readable(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        self._changed.set()

    async def wait(self, seconds: float) -> None:
        """Returns when the directory changed since the last call, or after ``seconds``."""
        if not self._reading:
            asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
            self._reading = True
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except TimeoutError:
            pass
        self._changed.clear()

    def close(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False
        os.close(self.fd)
