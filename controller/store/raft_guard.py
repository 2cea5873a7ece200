"""Closes Raft connections that do not authenticate in time.

pysyncobj checks a connection's timeout only when the connection has activity, so a client that
connects to the Raft port and sends nothing (or half a frame, e.g. an HTTP request read as a huge
length prefix) is kept forever: anyone who reaches the port could exhaust the file descriptors.
Runs as a pysyncobj tick callback, on the tick thread.
"""

from __future__ import annotations

import time
from typing import Any

MAX_PREAUTH_BUFFER = 64 * 1024


class PreAuthReaper:
    def __init__(self, transport: Any, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._first_seen: dict[Any, float] = {}
        self.closed = 0

    def __call__(self) -> None:
        pending = self._transport._unknownConnections
        if not pending and not self._first_seen:
            return
        now = time.monotonic()
        for conn in list(pending):
            first = self._first_seen.setdefault(conn, now)
            buffered = len(getattr(conn, "_TcpConnection__readBuffer", b""))
            if now - first > self._timeout or buffered > MAX_PREAUTH_BUFFER:
                conn.disconnect()
                pending.discard(conn)
                self.closed += 1
        for conn in [c for c in self._first_seen if c not in pending]:
            del self._first_seen[conn]
