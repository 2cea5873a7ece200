"""shared/sdnotify.py against a fake NOTIFY_SOCKET, and a real storaged telling it that it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd's, named in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock
    finally:
        sock.close()


def test_ready_sends_one_datagram(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("API on 127.0.0.1:8600")
    fields = notify_socket.recv(4096).decode().split("\n")
    assert fields == ["READY=1", f"MAINPID={os.getpid()}", "STATUS=API on 127.0.0.1:8600"]


def test_status_and_stopping(notify_socket: socket.socket) -> None:
    assert sdnotify.status("two\nlines")
    assert notify_socket.recv(4096) == b"STATUS=two lines"
    assert sdnotify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tc-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(4096).startswith(b"READY=1\n")


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.ready() is False  # logged, never raised


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_storaged_notifies_once_s3_listens(notify_socket: socket.socket, tmp_path: Path) -> None:
    """The real daemon, started like its unit starts it: READY=1 arrives, and S3 answers by then."""
    port = _free_port()
    env = dict(os.environ, THECLOUD_STORAGED_DATA_DIR=str(tmp_path / "data"),
               THECLOUD_STORAGED_S3=f"127.0.0.1:{port}")
    auth = tmp_path / "auth.json"
    auth.write_text('{"credentials": []}')
    exe = Path(sys.executable).with_name("thecloud-storaged")
    proc = subprocess.Popen([str(exe), "run", "--local-auth", str(auth)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            message = notify_socket.recv(4096).decode()
        except TimeoutError:
            proc.terminate()
            pytest.fail(f"no READY=1 within 10 s: {proc.communicate(timeout=10)[1].decode()[-2000:]}")
        assert "READY=1" in message.split("\n")
        assert f"STATUS=S3 on 127.0.0.1:{port}" in message.split("\n")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        assert notify_socket.recv(4096) == b"STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
