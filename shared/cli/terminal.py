"""Bridges the local terminal to an interactive session (`cloud instance exec -i`, `cloud instance console`).

The main thread writes the session's output to stdout; a daemon thread reads stdin and sends it. With ``raw``
and a terminal on stdin, the terminal is put in raw mode (every key goes to the remote side, Ctrl-C included)
and restored on the way out, whatever happens; its size is sent at the start and whenever it changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import IO, Any

from shared.sdk.errors import CloudError
from shared.sdk.sessions import InteractiveSession

ESCAPE = b"\x1d"  # Ctrl-], as in virsh console and telnet
READ_SIZE = 4096


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _send_size(session: InteractiveSession) -> None:
    with contextlib.suppress(OSError, CloudError):
        size = os.get_terminal_size(sys.stdout.fileno())
        session.resize(size.lines, size.columns)


@contextlib.contextmanager
def _follow_size(session: InteractiveSession) -> Iterator[None]:
    _send_size(session)
    previous = signal.signal(signal.SIGWINCH, lambda _sig, _frame: _send_size(session))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _reader(stdin: IO[bytes]) -> Any:
    """Reads what is there (up to READ_SIZE). From the file descriptor itself when there is one: a daemon thread
    blocked inside a buffered stdin would hold its lock when the interpreter shuts down."""
    try:
        fd = stdin.fileno()
    except (OSError, ValueError, AttributeError):
        return getattr(stdin, "read1", stdin.read)
    return lambda size: os.read(fd, size)


def _pump_stdin(session: InteractiveSession, stdin: IO[bytes], escape: bytes | None, eof_closes_input: bool) -> None:
    read = _reader(stdin)
    try:
        while True:
            data = read(READ_SIZE)
            if not data:
                if eof_closes_input:
                    session.close_stdin()
                return
            if escape is not None and escape in data:
                before = data.split(escape, 1)[0]
                if before:
                    session.send(before)
                session.close()  # the main thread's read ends
                return
            session.send(data)
    except (CloudError, OSError, ValueError):
        return  # the session ended (or stdin went away) meanwhile


def bridge(session: InteractiveSession, *, forward_stdin: bool = True, raw: bool = False,
           escape: bytes | None = None, eof_closes_input: bool = True) -> int | None:
    """Runs the session until it ends (or ``escape`` is typed); returns its exit code (None: unknown or a
    console). ``eof_closes_input``: the end of stdin closes the command's stdin (else the session goes on)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    with contextlib.ExitStack() as stack:
        if raw and stdin_is_terminal():
            stack.enter_context(_raw_terminal(sys.stdin.fileno()))
            stack.enter_context(_follow_size(session))
        if forward_stdin:
            threading.Thread(target=_pump_stdin, args=(session, stdin, escape, eof_closes_input),
                             name="cloud-stdin", daemon=True).start()
        try:
            for chunk in session:
                stdout.write(chunk)
                stdout.flush()
        finally:
            session.close()
    return session.exit_code
