"""A small S3 client for storaged's own transfers (backups): streamed uploads (multipart above one part) and
streamed downloads, SigV4-signed by sigv4_client. Never holds more than one part in memory.

Each uploaded part is signed with its own SHA-256 (the server checks it), and the whole object's SHA-256 and
size are computed on the way, for the restore to verify against.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote
from xml.etree.ElementTree import Element, SubElement, tostring

import aiohttp
from defusedxml import ElementTree as SafeET
from yarl import URL

from storaged.s3.sigv4 import EMPTY_SHA256, UNSIGNED
from storaged.s3.sigv4_client import object_path, sign

PART_SIZE = 32 << 20
READ_SIZE = 1 << 20
ZERO_BLOCK = bytes(READ_SIZE)
Progress = Callable[[int], None]


class TransferError(Exception):
    """An S3 request failed; the message says which and why (the server's S3 error code when it gave one)."""


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    bucket: str
    key: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"


@dataclass(frozen=True)
class Transferred:
    size: int
    sha256: str
    etag: str


def _code(body: bytes) -> str:
    try:
        root = SafeET.fromstring(body)
    except Exception:
        return ""
    code, message = root.findtext("Code") or "", root.findtext("Message") or ""
    return f"{code}: {message}" if code else ""


class S3Client:
    def __init__(self, target: S3Target, session: aiohttp.ClientSession, part_size: int = PART_SIZE) -> None:
        self.target = target
        self.session = session
        self.part_size = part_size

    def _url(self, query: str = "") -> str:
        base = self.target.endpoint.rstrip("/") + object_path(self.target.bucket, self.target.key)
        return f"{base}?{query}" if query else base

    async def _request(self, method: str, query: str, body: bytes | None = None,
                       payload_hash: str = EMPTY_SHA256) -> tuple[aiohttp.ClientResponse, bytes]:
        url = self._url(query)
        headers = sign(method, url, payload_hash, self.target.access_key_id, self.target.secret_access_key,
                       self.target.region)
        try:
            async with self.session.request(method, URL(url, encoded=True), data=body, headers=headers) as resp:
                data = await resp.read()
        except aiohttp.ClientError as exc:
            raise TransferError(f"{method} {self.target.bucket}/{self.target.key}: {exc}") from exc
        if resp.status >= 300:
            raise TransferError(f"{method} {self.target.bucket}/{self.target.key}: HTTP {resp.status} "
                                f"{_code(data)}".strip())
        return resp, data

    async def upload_file(self, path: Path, progress: Progress | None = None) -> Transferred:
        """Uploads the file: one PUT when it fits one part, else a multipart upload (aborted on failure)."""
        size = (await asyncio.to_thread(os.stat, path)).st_size
        whole = hashlib.sha256()
        fh: BinaryIO = await asyncio.to_thread(open, path, "rb")
        try:
            if size <= self.part_size:
                data, digest = await asyncio.to_thread(_read_part, fh, self.part_size, whole)
                resp, _ = await self._request("PUT", "", data, digest)
                if progress:
                    progress(len(data))
                return Transferred(len(data), whole.hexdigest(), resp.headers.get("ETag", "").strip('"'))
            return await self._multipart(fh, whole, progress)
        finally:
            fh.close()

    async def _multipart(self, fh: BinaryIO, whole: hashlib._Hash, progress: Progress | None) -> Transferred:
        _, body = await self._request("POST", "uploads=")
        upload_id = SafeET.fromstring(body).findtext("{*}UploadId") or SafeET.fromstring(body).findtext("UploadId")
        if not upload_id:
            raise TransferError("the server answered CreateMultipartUpload without an UploadId")
        etags: list[str] = []
        done = 0
        upload_id = quote(upload_id, safe="~")
        try:
            while True:
                data, digest = await asyncio.to_thread(_read_part, fh, self.part_size, whole)
                if not data and etags:
                    break
                number = len(etags) + 1
                resp, _ = await self._request("PUT", f"partNumber={number}&uploadId={upload_id}", data, digest)
                etags.append(resp.headers.get("ETag", "").strip('"'))
                done += len(data)
                if progress:
                    progress(done)
                if len(data) < self.part_size:
                    break
            complete = Element("CompleteMultipartUpload")
            for number, etag in enumerate(etags, 1):
                part = SubElement(complete, "Part")
                SubElement(part, "PartNumber").text = str(number)
                SubElement(part, "ETag").text = f'"{etag}"'
            xml = tostring(complete)
            _, body = await self._request("POST", f"uploadId={upload_id}", xml, hashlib.sha256(xml).hexdigest())
        except BaseException:
            try:
                await asyncio.shield(self._request("DELETE", f"uploadId={upload_id}"))
            except TransferError:
                pass
            raise
        etag = (SafeET.fromstring(body).findtext("{*}ETag") or "").strip('"')
        return Transferred(done, whole.hexdigest(), etag)

    async def download_to(self, path: Path, progress: Progress | None = None) -> Transferred:
        """Streams the object into ``path`` (sparse: all-zero blocks become holes), hashing it on the way."""
        url = self._url()
        headers = sign("GET", url, UNSIGNED, self.target.access_key_id, self.target.secret_access_key,
                       self.target.region)
        whole = hashlib.sha256()
        size = 0
        try:
            async with self.session.get(URL(url, encoded=True), headers=headers) as resp:
                if resp.status >= 300:
                    raise TransferError(f"GET {self.target.bucket}/{self.target.key}: HTTP {resp.status} "
                                        f"{_code(await resp.read())}".strip())
                etag = resp.headers.get("ETag", "").strip('"')
                out: BinaryIO = await asyncio.to_thread(open, path, "wb")
                try:
                    buffer = bytearray()
                    async for chunk in resp.content.iter_chunked(READ_SIZE):
                        buffer += chunk
                        whole_blocks = len(buffer) - len(buffer) % READ_SIZE  # holes stay block-aligned
                        if whole_blocks:
                            size += await asyncio.to_thread(_write_sparse, out, bytes(buffer[:whole_blocks]), whole)
                            del buffer[:whole_blocks]
                            if progress:
                                progress(size)
                    size += await asyncio.to_thread(_write_sparse, out, bytes(buffer), whole)
                    await asyncio.to_thread(_finish, out, size)
                finally:
                    out.close()
        except aiohttp.ClientError as exc:
            raise TransferError(f"GET {self.target.bucket}/{self.target.key}: {exc}") from exc
        return Transferred(size, whole.hexdigest(), etag)


def _read_part(fh: BinaryIO, size: int, whole: hashlib._Hash) -> tuple[bytes, str]:
    data = fh.read(size)
    whole.update(data)
    return data, hashlib.sha256(data).hexdigest()


def _finish(out: BinaryIO, size: int) -> None:
    out.truncate(size)
    out.flush()
    os.fsync(out.fileno())


def _write_sparse(out: BinaryIO, data: bytes, whole: hashlib._Hash) -> int:
    whole.update(data)
    for start in range(0, len(data), READ_SIZE):
        block = data[start:start + READ_SIZE]
        if block == ZERO_BLOCK[:len(block)]:
            out.seek(len(block), os.SEEK_CUR)
        else:
            out.write(block)
    return len(data)
