"""`cloud instance exec -i` and `cloud instance console`: the terminal bridge, on a fake SDK session."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient, Settings
from shared.sdk.compute import InstancesAPI
from shared.sdk.sessions import session_url


class FakeSession:
    """Echoes what it is sent; the end of input ends it with ``exit_code``."""

    def __init__(self, exit_code: int | None) -> None:
        self.final = exit_code
        self.exit_code: int | None = None
        self.sent: list[bytes] = []
        self.closed = False
        self._out: queue.Queue[bytes | None] = queue.Queue()

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self._out.put(data)

    def close_stdin(self) -> None:
        self.exit_code = self.final
        self._out.put(None)

    def resize(self, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._out.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._out.get(timeout=10)) is not None:
            yield chunk


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THECLOUD_CONFIG", str(tmp_path / "config.toml"))


def _client(settings: Settings | None = None) -> CloudClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/instances/vm1/console")
        return httpx.Response(200, json={"output": "boot log\n"})

    return CloudClient("http://cloud.test", api_key="tck_x_y", transport=httpx.MockTransport(handler))


def _run(*args: str, stdin: bytes) -> Any:
    return CliRunner().invoke(cli, list(args), input=stdin, obj=CliState(client_factory=_client))


def test_exec_interactive_bridges_stdin_and_exits_with_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    session = FakeSession(exit_code=5)
    calls: list[tuple[Any, ...]] = []

    def exec_interactive(self: InstancesAPI, instance: str, command: list[str], **kw: Any) -> FakeSession:
        calls.append((instance, command, kw))
        return session

    monkeypatch.setattr(InstancesAPI, "exec_interactive", exec_interactive)
    result = _run("instance", "exec", "web", "-i", "--", "sh", "-c", "cat", stdin=b"hello\nworld\n")
    assert result.exit_code == 5, result.output
    assert result.stdout == "hello\nworld\n"
    assert calls == [("web", ["sh", "-c", "cat"], {"tty": False, "tenant": None})]
    assert session.closed


def test_exec_without_an_exit_code_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(InstancesAPI, "exec_interactive", lambda *a, **kw: FakeSession(exit_code=None))
    result = _run("instance", "exec", "web", "-it", "--", "sh", stdin=b"")
    assert result.exit_code == 1 and "exit code is unknown" in result.stderr


def test_console_leaves_on_ctrl_close_bracket(monkeypatch: pytest.MonkeyPatch) -> None:
    session = FakeSession(exit_code=None)
    monkeypatch.setattr(InstancesAPI, "console_interactive", lambda self, instance, **kw: session)
    result = _run("instance", "console", "vm1", stdin=b"root\r\x1dnot sent")
    assert result.exit_code == 0, result.output
    assert session.sent == [b"root\r"] and session.closed
    assert result.stdout == "root\r"
    # --snapshot: the output so far, as before
    snapshot = _run("instance", "console", "vm1", "--snapshot", stdin=b"")
    assert (snapshot.exit_code, snapshot.stdout) == (0, "boot log\n")


def test_session_urls() -> None:
    assert session_url("http://h:8600/", "/v1/x/ws", [("command", "a b"), ("command", "-c")]) == \
        "ws://h:8600/v1/x/ws?command=a+b&command=-c"
    assert session_url("https://h", "/v1/x/ws", []) == "wss://h/v1/x/ws"
