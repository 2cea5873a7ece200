"""Bucket listings: keys in UTF-8 byte order, grouped into common prefixes by a delimiter, paged by a cursor.

A cursor is the last key or common prefix a page returned; the next page starts strictly after it (and never
repeats a common prefix the cursor lies in). ListObjects V1 hands it out as NextMarker, V2 as an opaque
continuation token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field

from storaged.s3.errors import invalid_argument
from storaged.s3.index import ObjectIndex, ObjectRow

PAGE = 1000
_AFTER_EVERYTHING = "\U0010ffff"


@dataclass
class Listing:
    objects: list[ObjectRow] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    cursor: str = ""  # the last key or common prefix returned


def _entries(index: ObjectIndex, bucket: str, prefix: str, delimiter: str,
             after: str) -> Iterator[ObjectRow | str]:
    cursor = after
    while True:
        rows = index.list_latest(bucket, cursor, prefix, PAGE)
        for row in rows:
            if delimiter:
                pos = row.key.find(delimiter, len(prefix))
                if pos >= 0:
                    common = row.key[:pos + len(delimiter)]
                    cursor = common + _AFTER_EVERYTHING
                    if not after.startswith(common):
                        yield common
                    break
            cursor = row.key
            yield row
        else:
            if len(rows) < PAGE:
                return


def list_objects(index: ObjectIndex, bucket: str, prefix: str, delimiter: str, after: str,
                 max_keys: int) -> Listing:
    """Blocking (call in a thread): one page of at most MAX_KEYS keys and common prefixes."""
    out = Listing()
    if max_keys <= 0:
        return out
    for entry in _entries(index, bucket, prefix, delimiter, after):
        if len(out.objects) + len(out.prefixes) == max_keys:
            out.truncated = True
            break
        if isinstance(entry, str):
            out.prefixes.append(entry)
            out.cursor = entry
        else:
            out.objects.append(entry)
            out.cursor = entry.key
    return out


def encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise invalid_argument("The continuation token provided is incorrect", "continuation-token", token) from exc


def parse_max_keys(value: str | None, name: str = "max-keys") -> int:
    if value is None:
        return 1000
    try:
        n = int(value)
    except ValueError as exc:
        raise invalid_argument(f"Provided {name} not an integer or within integer range", name, value) from exc
    if n < 0:
        raise invalid_argument(f"Argument {name} must be an integer between 0 and 2147483647", name, value)
    return min(n, 1000)
