"""aws-chunked request bodies: decode the chunks, verify each chunk signature and the trailing checksums.

Signed chunks chain from the seed signature of the request: chunk N is signed over
"AWS4-HMAC-SHA256-PAYLOAD\\n{date}\\n{scope}\\n{signature N-1}\\n{sha256('')}\\n{sha256(data N)}". A signed trailer is
signed over "AWS4-HMAC-SHA256-TRAILER\\n{date}\\n{scope}\\n{last chunk signature}\\n{sha256(trailer lines)}".
Data is handed on before its chunk is verified: a bad signature anywhere fails the whole upload, and the caller
discards what it wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator

from aiohttp import StreamReader

from storaged.s3.errors import S3Error
from storaged.s3.sigv4 import EMPTY_SHA256, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, AuthContext, hmac_hex

MAX_LINE = 4096
SLICE = 1 << 20
_THREAD_HASH_MIN = 64 << 10


def _incomplete(why: str) -> S3Error:
    return S3Error("IncompleteBody", f"The aws-chunked body is malformed: {why}", 400)


def _bad_signature() -> S3Error:
    return S3Error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you "
                   "provided (aws-chunked chunk or trailer).", 403)


class ChunkedDecoder:
    """Decodes one aws-chunked body; `trailers` holds the trailing headers once `chunks()` is exhausted."""

    def __init__(self, stream: StreamReader, auth: AuthContext, expected_trailers: list[str]) -> None:
        self._stream = stream
        self._auth = auth
        self._signed = auth.payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
        self._has_trailer = auth.payload_hash != STREAMING_SIGNED
        self._expected_trailers = expected_trailers
        self._prev_signature = auth.signature
        self.trailers: dict[str, str] = {}

    async def _line(self) -> bytes:
        try:
            line = await self._stream.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, ValueError) as exc:
            raise _incomplete("a chunk header or trailer line is missing or too long") from exc
        if not line.endswith(b"\r\n") or len(line) > MAX_LINE:
            raise _incomplete("a chunk header or trailer line is missing or too long")
        return line[:-2]

    def _parse_header(self, line: bytes) -> tuple[int, str]:
        size_text, _, ext = line.decode("latin-1").partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError as exc:
            raise _incomplete(f"bad chunk size {size_text[:20]!r}") from exc
        signature = ""
        if self._signed:
            name, _, signature = ext.partition("=")
            if name.strip() != "chunk-signature" or not signature:
                raise _incomplete("a chunk has no chunk-signature")
        return size, signature.strip()

    def _check_chunk(self, digest_hex: str, signature: str) -> None:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self._auth.amz_date, self._auth.scope, self._prev_signature,
                             EMPTY_SHA256, digest_hex])
        if not hmac.compare_digest(hmac_hex(self._auth.signing_key, to_sign), signature):
            raise _bad_signature()
        self._prev_signature = signature

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = self._parse_header(await self._line())
            digest = hashlib.sha256() if self._signed else None
            remaining = size
            while remaining:
                try:
                    data = await self._stream.readexactly(min(remaining, SLICE))
                except asyncio.IncompleteReadError as exc:
                    raise _incomplete("the body ended inside a chunk") from exc
                remaining -= len(data)
                if digest is not None:
                    if len(data) >= _THREAD_HASH_MIN:
                        await asyncio.to_thread(digest.update, data)
                    else:
                        digest.update(data)
                yield data
            if digest is not None:
                self._check_chunk(digest.hexdigest(), signature)
            if size == 0:
                break
            if await self._line() != b"":
                raise _incomplete("a chunk is longer than its declared size")
        if self._has_trailer:
            await self._read_trailers()
        else:
            await self._line()

    async def _read_trailers(self) -> None:
        signature = ""
        lines: list[str] = []
        while True:
            line = (await self._line()).decode("latin-1")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise _incomplete(f"bad trailer line {line[:40]!r}")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                signature = value
                continue
            self.trailers[name] = value
            lines.append(f"{name}:{value}\n")
        missing = [t for t in self._expected_trailers if t not in self.trailers]
        if missing:
            raise _incomplete(f"the trailer {', '.join(missing)} announced in x-amz-trailer did not arrive")
        if self._signed:
            to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self._auth.amz_date, self._auth.scope,
                                 self._prev_signature, hashlib.sha256("".join(lines).encode()).hexdigest()])
            if not signature or not hmac.compare_digest(hmac_hex(self._auth.signing_key, to_sign), signature):
                raise _bad_signature()
