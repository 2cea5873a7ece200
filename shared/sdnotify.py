"""systemd's readiness protocol (``sd_notify``): one datagram to ``$NOTIFY_SOCKET``, no dependency.

The units in ``systemd/`` are ``Type=notify``: systemd considers a daemon started only once it sends
``READY=1``, so ``systemctl start`` (and units ordered after it) wait until the daemon really serves.
Without ``NOTIFY_SOCKET`` (``make up``, tests, a shell) every call is a no-op that returns False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("thecloud.sdnotify")
ENV = "NOTIFY_SOCKET"


def _address(value: str) -> str | bytes | None:
    """A filesystem path, or an abstract socket (``@name`` -> ``\\0name``); None for anything else."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:... and other transports are not used by the units here


def notify(*fields: str) -> bool:
    """Sends ``KEY=VALUE`` lines (e.g. ``READY=1``, ``STATUS=...``); True when a datagram was sent.

    Never raises: readiness reporting must not take a daemon down. A send on a unix datagram socket does not
    block for long, so async callers may call it directly.
    """
    value = os.environ.get(ENV, "")
    address = _address(value) if value else None
    if address is None:
        return False
    message = "\n".join(f.replace("\n", " ") for f in fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", value, exc)
        return False
    return True


def ready(status: str = "") -> bool:
    """Tells systemd the daemon is serving (``READY=1``), with an optional human-readable status."""
    return notify("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    """Updates the line ``systemctl status`` shows."""
    return notify(f"STATUS={text}")


def stopping() -> bool:
    """Tells systemd a clean shutdown has begun (``STOPPING=1``)."""
    return notify("STOPPING=1")
