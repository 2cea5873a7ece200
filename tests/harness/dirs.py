"""Directories for daemons that drop privileges (QEMU as libvirt-qemu, dnsmasq as nobody): pytest's own tmp
dirs are 0700 all the way up, so such a daemon could not reach anything under them."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory (mode 0711 under /tmp) that other users can traverse, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
