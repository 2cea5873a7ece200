"""Request bodies: decoded data as a stream, and the digests that must match once it has all arrived.

`Body.pieces()` yields the payload (aws-chunked decoded) in batches of at least BATCH bytes, each a list of the
buffers as they arrived (never joined: no copy); the store hands each batch to a worker thread that feeds it to
`Digests.update` and writes it with one writev while the next batch arrives. `Body.verify(digests)` then compares
the declared payload SHA-256, Content-MD5, x-amz-checksum-* (header or trailer) and the declared length with what
arrived.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterator

from aiohttp import web

from storaged.s3 import checksums
from storaged.s3.chunked import ChunkedDecoder
from storaged.s3.errors import S3Error, invalid_argument
from storaged.s3.sigv4 import STREAMING_MODES, UNSIGNED, AuthContext

BATCH = 1 << 20  # per hand-over to the worker thread (2 MiB measured worse: fresh buffers cost page faults)


class Digests:
    """MD5 (the ETag) plus whatever the client asked to be checked; update() is called from a worker thread."""

    def __init__(self, want_sha256: bool, checksum_algorithm: str | None) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 (the S3 ETag is an MD5 by definition, not a security measure)
        self.sha256 = hashlib.sha256() if want_sha256 else None
        self.algorithm = checksum_algorithm
        self.checksum = checksums.hasher(checksum_algorithm) if checksum_algorithm else None
        self.size = 0

    def update(self, data: bytes) -> None:
        """Blocking; hashlib and zlib release the GIL on buffers this size, so batches hash on other cores."""
        self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        if self.checksum is not None:
            self.checksum.update(data)
        self.size += len(data)

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()


def _checksum_algorithm(request: web.Request, trailer_names: list[str]) -> tuple[str | None, str | None]:
    """(algorithm, value declared in a header or None when it comes in a trailer)."""
    for alg in checksums.ALGORITHMS:
        value = request.headers.get(checksums.header_name(alg))
        if value is not None:
            return alg, value
    for name in trailer_names:
        if name.startswith("x-amz-checksum-") and name[len("x-amz-checksum-"):] in checksums.ALGORITHMS:
            return name[len("x-amz-checksum-"):], None
    sdk = request_sdk_algorithm(request)
    return (sdk, None) if sdk else (None, None)


def request_sdk_algorithm(request: web.Request) -> str | None:
    value = request.headers.get("x-amz-sdk-checksum-algorithm", "").lower()
    if value and value not in checksums.ALGORITHMS:
        raise invalid_argument(f"unsupported checksum algorithm {value}", "x-amz-sdk-checksum-algorithm", value)
    return value or None


class Body:
    def __init__(self, request: web.Request, auth: AuthContext) -> None:
        self._request = request
        self._auth = auth
        self.streaming = auth.payload_hash in STREAMING_MODES
        if self.streaming:
            trailer = request.headers.get("x-amz-trailer", "")
            self._trailer_names = [t.strip().lower() for t in trailer.split(",") if t.strip()]
            self._decoder: ChunkedDecoder | None = ChunkedDecoder(request.content, auth, self._trailer_names)
            decoded = request.headers.get("x-amz-decoded-content-length")
            self.length = int(decoded) if decoded and decoded.isdigit() else None
        else:
            self._trailer_names = []
            self._decoder = None
            self.length = request.content_length
        self.algorithm, self._declared_checksum = _checksum_algorithm(request, self._trailer_names)
        self._content_md5 = request.headers.get("content-md5")

    def digests(self) -> Digests:
        want_sha = self._auth.payload_hash not in (UNSIGNED, *STREAMING_MODES)
        return Digests(want_sha, self.algorithm)

    async def _raw(self) -> AsyncIterator[bytes]:
        if self._decoder is not None:
            async for data in self._decoder.chunks():
                yield data
            return
        content = self._request.content
        while True:
            data, _ = await content.readchunk()  # one buffer as received, not a joined copy
            if data:
                yield data
            elif content.at_eof():  # not "end of HTTP chunk is False": the shared empty payload never says so again
                return

    async def pieces(self) -> AsyncIterator[list[bytes]]:
        """The decoded payload in batches of at least BATCH bytes (the last one may be shorter)."""
        parts: list[bytes] = []
        size = 0
        async for data in self._raw():
            parts.append(data)
            size += len(data)
            if size >= BATCH:
                yield parts
                parts, size = [], 0
        if parts:
            yield parts

    def declared_checksum(self) -> str | None:
        if self._declared_checksum is not None:
            return self._declared_checksum
        if self._decoder is not None and self.algorithm:
            return self._decoder.trailers.get(checksums.header_name(self.algorithm))
        return None

    def verify(self, digests: Digests) -> str | None:
        """Raises S3Error unless everything declared matches; returns the object's checksum value, if any."""
        if self.length is not None and digests.size != self.length:
            raise S3Error("IncompleteBody", "You did not provide the number of bytes specified by the "
                          "Content-Length HTTP header.", 400)
        if digests.sha256 is not None and digests.sha256.hexdigest() != self._auth.payload_hash:
            raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match "
                          "what was computed.", 400)
        if self._content_md5 is not None:
            try:
                declared = base64.b64decode(self._content_md5, validate=True)
            except binascii.Error as exc:
                raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.", 400) from exc
            if declared != digests.md5.digest():
                raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.", 400)
        declared_checksum = self.declared_checksum()
        if digests.checksum is not None and declared_checksum is not None:
            computed = digests.checksum.value()
            if computed != declared_checksum:
                raise S3Error("BadDigest", f"The {(self.algorithm or '').upper()} you specified did not match the "
                              "calculated checksum.", 400)
            return computed
        return declared_checksum

    async def read_all(self, limit: int) -> bytes:
        """A small body (an XML request document), verified."""
        digests = self.digests()
        out = bytearray()
        async for data in self._raw():
            out += data
            if len(out) > limit:
                raise S3Error("MaxMessageLengthExceeded", "Your request was too big.", 400)
        digests.update(bytes(out))
        self.verify(digests)
        return bytes(out)
