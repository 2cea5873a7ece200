"""The agent's wire protocol for simulated hosts, without aiohttp's client: HTTP/1.1 over mutual TLS, msgpack.

``shared.hostlink.ControllerLink`` (aiohttp) costs the simulator about as much CPU per heartbeat as the leader
spends answering it, and on a 2-core machine the 10,000 simulated hosts would then starve the controllers they
measure. This speaks the same protocol to the same endpoints (``POST /agent/v1/heartbeat`` etc., the host's own
client certificate, ``server_hostname=controller.thecloud``, msgpack bodies, the next controller on a connection
error) on one keep-alive connection per host, with a fraction of the overhead; what an answer means (the result,
the 421 + ``X-Leader`` redirect, a refusal) is decided by the link's own ``judge``. Requests of one host are
sequential.

Two differences, for a fleet of 10,000 sharing a small machine with its controllers: a request may take 30 s (not
10), and a request that times out is not retried on the other controllers. With ControllerLink's behaviour, a
leader that was slow for a moment (a leader change, a long garbage collection, a busy machine) got thousands of
hosts timing out, reconnecting through a follower's 421 and back, and the TLS handshakes kept it too busy to
answer within 10 s: a reconnect storm that did not end by itself (see the report of tests/bench/compute_sim.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import msgpack

from shared import pki
from shared.hostlink import LinkError, judge

MSGPACK = "application/msgpack"
CONNECT_SECONDS = 10.0


class LeanLink:
    def __init__(self, endpoints: list[str], ssl_context: ssl.SSLContext) -> None:
        if not endpoints:
            raise LinkError("no controller endpoints")
        self.endpoints = list(dict.fromkeys(endpoints))
        self._current = 0
        self._ssl = ssl_context
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, str] | None = None
        self.connects = 0

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   seconds: float = 30.0) -> dict[str, Any]:
        """One request, trying each controller at most once (plus one leader redirect), like ControllerLink."""
        errors: list[str] = []
        redirect: str | None = None
        for _ in range(len(self.endpoints) + 1):
            endpoint = redirect or self.endpoints[self._current % len(self.endpoints)]
            redirect = None
            try:
                async with asyncio.timeout(seconds):
                    status, headers, payload = await self._send(endpoint, method, path, body)
            except TimeoutError:
                # Slow, not gone: the connection is given up (its answer is still due) but the controller is
                # not; the next request reconnects to it. (Moving on to the next controller and back, as
                # ControllerLink does, costs an overloaded leader two more TLS handshakes per host: with
                # thousands of hosts that keeps it overloaded.)
                self.close()
                errors.append(f"{endpoint}: timed out after {seconds:.0f}s")
                break
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as exc:
                self.close()
                errors.append(f"{endpoint}: {exc.__class__.__name__}: {exc}")
                self._current += 1
                continue
            answer = judge(endpoint, method, path, status, headers.get("x-leader", ""), payload)
            if isinstance(answer, dict):
                return answer
            errors.append(answer.reason)
            if answer.leader:
                if answer.leader not in self.endpoints:
                    self.endpoints.append(answer.leader)
                self._current = self.endpoints.index(answer.leader)
                redirect = answer.leader
            else:
                self._current += 1
        raise LinkError("no controller answered: " + "; ".join(errors[-3:]))

    async def _send(self, endpoint: str, method: str, path: str,
                    body: dict[str, Any] | None) -> tuple[int, dict[str, str], Any]:
        if self._conn is None or self._conn[2] != endpoint or self._conn[1].is_closing():
            self.close()
            host, port = endpoint.rsplit(":", 1)
            async with asyncio.timeout(CONNECT_SECONDS):
                reader, writer = await asyncio.open_connection(host, int(port), ssl=self._ssl,
                                                               server_hostname=pki.CONTROLLER_NAME)
            self._conn = (reader, writer, endpoint)
            self.connects += 1
        reader, writer, _ = self._conn
        data = msgpack.packb(body, use_bin_type=True) if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: {MSGPACK}\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        if headers.get("content-type", "").startswith(MSGPACK):
            return status, headers, msgpack.unpackb(raw, raw=False)
        try:  # errors before the handler (e.g. 413) may come as JSON or text
            return status, headers, json.loads(raw) if raw else {}
        except ValueError:
            return status, headers, {"error": {"message": raw[:300].decode(errors="replace")}}

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None
