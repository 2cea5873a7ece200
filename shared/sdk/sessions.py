"""Interactive sessions (exec, serial console) over a WebSocket, synchronously (the ``websockets`` sync client).

A session is used from plain threads: one may read (``recv`` or iterating) while another writes (``send``), as
the ``cloud`` CLI does to bridge a terminal. Frames as in docs/api.md ("Sessions").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from shared.sdk.errors import CloudError, error_from_body
from shared.sdk.tls import ssl_context

if TYPE_CHECKING:
    from shared.sdk.client import CloudClient

MAX_FRAME = 1024 * 1024


class InteractiveSession:
    """A running command or console. ``recv``/iteration give output (bytes) until the session ends; then
    ``exit_code`` holds the command's exit code (None for a console). Close it (or use ``with``) when done."""

    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection
        self.exit_code: int | None = None
        self.ended = False

    def send(self, data: bytes | str) -> None:
        """Input for the command (its stdin) or the console; str is sent UTF-8 encoded."""
        self._send(data.encode() if isinstance(data, str) else bytes(data))

    def close_stdin(self) -> None:
        """The command reads end-of-file from now on (its output and exit code still follow)."""
        self._send(json.dumps({"eof": True}))

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's size, for a session with a tty."""
        self._send(json.dumps({"resize": {"rows": rows, "cols": cols}}))

    def _send(self, frame: bytes | str) -> None:
        if self.ended:
            raise CloudError(0, "session_closed", "the session has ended")
        try:
            self._ws.send(frame)
        except ConnectionClosed as exc:
            raise CloudError(0, "session_closed", f"the session has ended ({exc})") from None

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next piece of output, or None once the session ended. TimeoutError after ``timeout`` seconds
        without output; CloudError when the session broke."""
        while not self.ended:
            try:
                frame = self._ws.recv(timeout)
            except ConnectionClosedOK:
                self.ended = True
                break
            except ConnectionClosed as exc:
                self.ended = True
                raise CloudError(0, "connection_error", f"the session's connection broke: {exc}") from None
            if isinstance(frame, bytes):
                return frame
            self._control(frame)
        return None

    def _control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if "exit_code" in message:
            self.exit_code = message["exit_code"]
            self.ended = True
        if "error" in message:
            self.ended = True
            raise CloudError(502, "session_error", str(message["error"]))

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.recv()) is not None:
            yield chunk

    def read_all(self, timeout: float | None = None) -> bytes:
        """All output until the session ends (``timeout``: for each wait)."""
        out = bytearray()
        while (chunk := self.recv(timeout)) is not None:
            out += chunk
        return bytes(out)

    def close(self) -> None:
        """Ends the session (a command still running is killed)."""
        self.ended = True
        self._ws.close()

    def __enter__(self) -> InteractiveSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session_url(base_url: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    """http -> ws, https -> wss; ``params`` may repeat a name."""
    scheme, sep, rest = base_url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise CloudError(0, "bad_url", f"cannot open a WebSocket to {base_url!r}: the URL must start with http(s)://")
    query = f"?{urlencode(list(params))}" if params else ""
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}{path}{query}"


def open_session(client: CloudClient, path: str, params: Sequence[tuple[str, str]]) -> InteractiveSession:
    """Opens the WebSocket; an answer other than the upgrade raises CloudError as any API call (503 retried)."""
    url = session_url(client.url, path, params)
    headers = {"Authorization": f"Bearer {client.credential}"} if client.credential else {}
    options: dict[str, Any] = {"ssl": ssl_context(client.verify)} if url.startswith("wss:") else {}
    attempt = 0
    while True:
        try:
            # entered like a context manager: the connection itself (whatever connect() returns in this version)
            connection = connect(url, additional_headers=headers, open_timeout=client.timeout, max_size=MAX_FRAME,
                                 user_agent_header="thecloud-sdk/0.1", **options).__enter__()
            return InteractiveSession(connection)
        except InvalidStatus as exc:
            response = exc.response
            error = error_from_body(response.status_code, bytes(response.body or b""), response.headers,
                                    response.reason_phrase)
            if response.status_code == 503 and attempt < client.retries_on_503:
                attempt += 1
                client._sleep(_retry_after(response.headers.get("Retry-After")))
                continue
            raise error from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise CloudError(0, "connection_error", f"cannot open a session at {client.url}: {exc}") from None


def _retry_after(value: str | None) -> float:
    from shared.sdk.client import parse_retry_after

    return parse_retry_after(value)
