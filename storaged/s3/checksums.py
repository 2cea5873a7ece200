"""The x-amz-checksum-* algorithms: incremental hashers producing S3's base64 values."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

import crc32c as _crc32c

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
VERIFIABLE = ("crc32", "crc32c", "sha1", "sha256")  # crc64nvme values are stored and returned, not checked


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def value(self) -> str: ...


class _Crc:
    def __init__(self, fn: object) -> None:
        self._fn = fn
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = self._fn(data, self._crc)  # type: ignore[operator]

    def value(self) -> str:
        return base64.b64encode(self._crc.to_bytes(4, "big")).decode()


class _Hashlib:
    def __init__(self, name: str) -> None:
        self._h = hashlib.new(name)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def value(self) -> str:
        return base64.b64encode(self._h.digest()).decode()


def hasher(algorithm: str) -> Hasher | None:
    """A hasher for a lowercase algorithm name, or None when this server cannot compute it."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(_crc32c.crc32c)
    if algorithm in ("sha1", "sha256"):
        return _Hashlib(algorithm)
    return None


def header_name(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm}"
