"""The controller's data directory: its identity, and checks that refuse damaged or foreign dirs.

A damaged journal or dump must stop the daemon with a clear message; starting empty instead would
silently lose the cluster's state on this node.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from controller.store.raft import DUMP_FILE, JOURNAL_FILE
from controller.store.raft_journal import verify_journal
from controller.store.snapshot_file import SnapshotError, decode_dump, write_atomic

IDENTITY_FILE = "identity.json"
RESTORE_FILE = "restore.pending"
FORMAT = 1


class DataDirError(RuntimeError):
    pass


def _identity_path(data_dir: str) -> str:
    return os.path.join(data_dir, IDENTITY_FILE)


def prepare(data_dir: str, secret_fingerprint: str) -> dict[str, Any]:
    """Creates a new data dir or validates an existing one; returns its identity."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = _identity_path(data_dir)
    entries = [e for e in os.listdir(data_dir) if e != RESTORE_FILE]
    if not os.path.exists(path):
        if entries:
            raise DataDirError(f"{data_dir} is not empty but has no {IDENTITY_FILE}: it is not a thecloud "
                               "controller data dir (refusing to start; use an empty directory)")
        identity = {"format": FORMAT, "node_id": uuid.uuid4().hex, "secret_fingerprint": secret_fingerprint,
                    "created_at": time.time()}
        write_atomic(path, json.dumps(identity).encode())
        return identity
    identity = read_identity(data_dir)
    if identity.get("secret_fingerprint") != secret_fingerprint:
        raise DataDirError(f"{data_dir} belongs to a different cluster (its cluster secret differs); refusing "
                           "to start")
    check_raft_files(data_dir)
    return identity


def read_identity(data_dir: str) -> dict[str, Any]:
    path = _identity_path(data_dir)
    try:
        with open(path, encoding="utf-8") as f:
            identity: dict[str, Any] = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataDirError(f"{path} is unreadable or corrupted ({exc}); refusing to start") from exc
    if not isinstance(identity, dict) or identity.get("format") != FORMAT:
        raise DataDirError(f"{path} has an unknown format; refusing to start")
    return identity


def check_raft_files(data_dir: str) -> None:
    journal = os.path.join(data_dir, JOURNAL_FILE)
    if os.path.exists(journal):
        try:
            verify_journal(journal)
        except (OSError, ValueError) as exc:
            raise DataDirError(f"Raft journal {journal} is corrupted: {exc}; refusing to start (restore this "
                               "node from a backup or remove it from the cluster and re-add it empty)") from exc
    dump = os.path.join(data_dir, DUMP_FILE)
    if os.path.exists(dump):
        try:
            with open(dump, "rb") as f:
                decode_dump(f.read())
        except (OSError, SnapshotError) as exc:
            raise DataDirError(f"Raft snapshot {dump} is corrupted: {exc}; refusing to start") from exc


def restore_path(data_dir: str) -> str:
    return os.path.join(data_dir, RESTORE_FILE)


def stage_restore(data_dir: str, backup_blob: bytes) -> None:
    """Prepares an empty data dir to start a new one-node cluster from a backup."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    if os.listdir(data_dir):
        raise DataDirError(f"{data_dir} is not empty; restore needs an empty data dir")
    write_atomic(restore_path(data_dir), backup_blob)
