"""The object index: which versions of which keys exist, in SQLite (WAL, synchronous=FULL).

Object data lives in files named by a random file id; a row here makes a file visible. A write is: data file
fsync'd and renamed into place, then one SQLite transaction. A crash before the commit leaves an unreferenced file
(swept at start), never a visible partial object. Keys compare as UTF-8 bytes (SQLite's BINARY collation), which
is S3's listing order. Every method is blocking: callers use asyncio.to_thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NULL_VERSION = "null"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL,
    latest INTEGER NOT NULL, delete_marker INTEGER NOT NULL, file TEXT, size INTEGER NOT NULL, etag TEXT NOT NULL,
    modified REAL NOT NULL, meta TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS objects_version ON objects(bucket, key, version_id);
CREATE INDEX IF NOT EXISTS objects_latest ON objects(bucket, latest, key);
CREATE INDEX IF NOT EXISTS objects_file ON objects(file);
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL, meta TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_bucket ON uploads(bucket, key, initiated);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, file TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, modified REAL NOT NULL, checksum TEXT, PRIMARY KEY(upload_id, part_number));
CREATE INDEX IF NOT EXISTS parts_file ON parts(file);
"""


@dataclass
class ObjectRow:
    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    modified: float
    meta: dict[str, Any] = field(default_factory=dict)  # content headers, user metadata, checksum
    file: str | None = None
    delete_marker: bool = False
    latest: bool = True
    seq: int = 0


@dataclass
class UploadRow:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    meta: dict[str, Any]


@dataclass
class PartRow:
    part_number: int
    file: str
    size: int
    etag: str
    modified: float
    checksum: str | None


def new_id() -> str:
    return uuid.uuid4().hex


def _object(row: sqlite3.Row) -> ObjectRow:
    return ObjectRow(bucket=row["bucket"], key=row["key"], version_id=row["version_id"], size=row["size"],
                     etag=row["etag"], modified=row["modified"], meta=json.loads(row["meta"]), file=row["file"],
                     delete_marker=bool(row["delete_marker"]), latest=bool(row["latest"]), seq=row["seq"])


class ObjectIndex:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # objects

    def put(self, row: ObjectRow, versioning: str) -> list[str]:
        """Makes ROW the latest version of its key; returns the files of versions it replaced (to delete)."""
        with self._tx() as db:
            return self._put(db, row, versioning)

    @staticmethod
    def _put(db: sqlite3.Connection, row: ObjectRow, versioning: str) -> list[str]:
        if versioning != "Enabled":
            row.version_id = NULL_VERSION
        elif row.version_id == NULL_VERSION or not row.version_id:
            row.version_id = new_id()
        replaced = [r["file"] for r in db.execute(
            "SELECT file FROM objects WHERE bucket=? AND key=? AND version_id=?",
            (row.bucket, row.key, row.version_id)) if r["file"]]
        db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND version_id=?",
                   (row.bucket, row.key, row.version_id))
        db.execute("UPDATE objects SET latest=0 WHERE bucket=? AND key=? AND latest=1", (row.bucket, row.key))
        cur = db.execute(
            "INSERT INTO objects(bucket, key, version_id, latest, delete_marker, file, size, etag, modified, meta) "
            "VALUES (?,?,?,1,?,?,?,?,?,?)",
            (row.bucket, row.key, row.version_id, int(row.delete_marker), row.file, row.size, row.etag,
             row.modified, json.dumps(row.meta)))
        row.seq = int(cur.lastrowid or 0)
        return replaced

    def get(self, bucket: str, key: str, version_id: str | None = None) -> ObjectRow | None:
        if version_id is None:
            rows = self._query("SELECT * FROM objects WHERE bucket=? AND latest=1 AND key=?", (bucket, key))
        else:
            rows = self._query("SELECT * FROM objects WHERE bucket=? AND key=? AND version_id=?",
                               (bucket, key, version_id))
        return _object(rows[0]) if rows else None

    def delete_version(self, bucket: str, key: str, version_id: str) -> ObjectRow | None:
        """Removes one version (promoting the next newest to latest); returns the removed row."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM objects WHERE bucket=? AND key=? AND version_id=?",
                              (bucket, key, version_id)).fetchall()
            if not rows:
                return None
            removed = _object(rows[0])
            db.execute("DELETE FROM objects WHERE seq=?", (removed.seq,))
            if removed.latest:
                db.execute("UPDATE objects SET latest=1 WHERE seq=(SELECT MAX(seq) FROM objects WHERE bucket=? AND "
                           "key=?)", (bucket, key))
        return removed

    def list_latest(self, bucket: str, after: str, prefix: str, limit: int) -> list[ObjectRow]:
        """Latest non-deleted versions with key > AFTER and key starting with PREFIX, in key order."""
        rows = self._query("SELECT * FROM objects WHERE bucket=? AND latest=1 AND delete_marker=0 AND key>? "
                           "AND key>=? ORDER BY key "
                           "LIMIT ?", (bucket, after, prefix, limit))
        return [_object(r) for r in rows if r["key"].startswith(prefix)]

    def list_versions(self, bucket: str, after_key: str, after_seq: int | None, prefix: str,
                      limit: int) -> list[ObjectRow]:
        """Every version in (key, newest first) order, starting after (AFTER_KEY, AFTER_SEQ)."""
        if after_seq is None:
            sql, args = "key>?", (after_key,)
        else:
            sql, args = "(key>? OR (key=? AND seq<?))", (after_key, after_key, after_seq)  # type: ignore[assignment]
        rows = self._query(f"SELECT * FROM objects WHERE bucket=? AND {sql} AND key>=? ORDER BY key, seq DESC "  # noqa: S608
                           "LIMIT ?", (bucket, *args, prefix, limit))
        return [_object(r) for r in rows if r["key"].startswith(prefix)]

    def bucket_is_empty(self, bucket: str) -> bool:
        return not self._query("SELECT 1 FROM objects WHERE bucket=? LIMIT 1", (bucket,))

    def drop_bucket(self, bucket: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads WHERE bucket=?)",
                       (bucket,))
            db.execute("DELETE FROM uploads WHERE bucket=?", (bucket,))
            db.execute("DELETE FROM objects WHERE bucket=?", (bucket,))

    def is_referenced(self, file: str) -> bool:
        return bool(self._query("SELECT 1 FROM objects WHERE file=? UNION ALL SELECT 1 FROM parts WHERE file=? "
                                "LIMIT 1", (file, file)))

    # multipart uploads

    def create_upload(self, upload: UploadRow) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO uploads(upload_id, bucket, key, initiated, meta) VALUES (?,?,?,?,?)",
                       (upload.upload_id, upload.bucket, upload.key, upload.initiated, json.dumps(upload.meta)))

    def get_upload(self, upload_id: str) -> UploadRow | None:
        rows = self._query("SELECT * FROM uploads WHERE upload_id=?", (upload_id,))
        if not rows:
            return None
        r = rows[0]
        return UploadRow(r["upload_id"], r["bucket"], r["key"], r["initiated"], json.loads(r["meta"]))

    def list_uploads(self, bucket: str, prefix: str, after_key: str, after_id: str, limit: int) -> list[UploadRow]:
        rows = self._query("SELECT * FROM uploads WHERE bucket=? AND key>=? AND (key>? OR (key=? AND upload_id>?)) "
                           "ORDER BY key, upload_id LIMIT ?", (bucket, prefix, after_key, after_key, after_id, limit))
        return [UploadRow(r["upload_id"], r["bucket"], r["key"], r["initiated"], json.loads(r["meta"]))
                for r in rows if r["key"].startswith(prefix)]

    def put_part(self, upload_id: str, part: PartRow) -> str | None:
        """Records a part (replacing one with the same number); returns the replaced part's file."""
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM uploads WHERE upload_id=?", (upload_id,)).fetchall():
                raise KeyError(upload_id)
            old = db.execute("SELECT file FROM parts WHERE upload_id=? AND part_number=?",
                             (upload_id, part.part_number)).fetchall()
            db.execute("INSERT OR REPLACE INTO parts(upload_id, part_number, file, size, etag, modified, checksum) "
                       "VALUES (?,?,?,?,?,?,?)", (upload_id, part.part_number, part.file, part.size, part.etag,
                                                  part.modified, part.checksum))
        return old[0]["file"] if old else None

    def list_parts(self, upload_id: str, after: int = 0, limit: int = 10000) -> list[PartRow]:
        rows = self._query("SELECT * FROM parts WHERE upload_id=? AND part_number>? ORDER BY part_number LIMIT ?",
                           (upload_id, after, limit))
        return [PartRow(r["part_number"], r["file"], r["size"], r["etag"], r["modified"], r["checksum"])
                for r in rows]

    @staticmethod
    def _finish_upload(db: sqlite3.Connection, upload_id: str) -> list[str]:
        files = [r["file"] for r in db.execute("SELECT file FROM parts WHERE upload_id=?", (upload_id,))]
        db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
        db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
        return files

    def finish_upload(self, upload_id: str) -> list[str]:
        """Forgets an upload and its parts; returns the part files (to delete)."""
        with self._tx() as db:
            return self._finish_upload(db, upload_id)

    def complete_upload(self, upload_id: str, row: ObjectRow, versioning: str) -> list[str] | None:
        """In one transaction: the assembled object becomes visible and the upload disappears.

        Returns the files to delete, or None when the upload was completed or aborted meanwhile."""
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM uploads WHERE upload_id=?", (upload_id,)).fetchall():
                return None
            return self._finish_upload(db, upload_id) + self._put(db, row, versioning)
