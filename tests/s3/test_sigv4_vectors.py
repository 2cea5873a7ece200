"""SigV4 and aws-chunked against the AWS documentation's published example (66,560 bytes of 'a')."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from storaged.s3.catalog import Credential
from storaged.s3.chunked import ChunkedDecoder
from storaged.s3.errors import S3Error
from storaged.s3.sigv4 import AuthContext, authenticate, signing_key

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CRED = Credential("AKIAIOSFODNN7EXAMPLE", SECRET, "tenant", "user")
DATE, SCOPE = "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
          "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
          "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNKS = ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
                  "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
                  "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"]
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


class _Keys:
    async def lookup(self, access_key_id: str) -> Credential | None:
        return CRED if access_key_id == CRED.access_key_id else None


def _body(signatures: list[str], trailer: str = "") -> bytes:
    out = f"10000;chunk-signature={signatures[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
    out += f"400;chunk-signature={signatures[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
    out += f"0;chunk-signature={signatures[2]}\r\n".encode()
    return out + trailer.encode() + b"\r\n"


async def _decode(body: bytes, auth: AuthContext, trailers: list[str]) -> tuple[bytes, dict[str, str]]:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    decoder = ChunkedDecoder(stream, auth, trailers)
    data = b"".join([piece async for piece in decoder.chunks()])
    return data, decoder.trailers


def _auth(mode: str, seed: str) -> AuthContext:
    return AuthContext(CRED, DATE, SCOPE, signing_key(SECRET, "20130524", "us-east-1"), seed, mode, False)


async def test_seed_signature_of_the_documented_request() -> None:
    headers = CIMultiDictProxy(CIMultiDict({
        "Host": "s3.amazonaws.com", "x-amz-date": DATE, "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560", "Content-Length": "66824",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{SCOPE},SignedHeaders=content-encoding;"
                         "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                         f"x-amz-storage-class,Signature={SEED}"}))
    auth = await authenticate("PUT", "/examplebucket/chunkObject.txt", "", headers, {}, _Keys(), now=1369353600)
    assert auth.signature == SEED and auth.credential == CRED
    with pytest.raises(S3Error) as exc:
        await authenticate("PUT", "/examplebucket/other.txt", "", headers, {}, _Keys(), now=1369353600)
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as exc:
        await authenticate("PUT", "/examplebucket/chunkObject.txt", "", headers, {}, _Keys(), now=1369353600 + 3600)
    assert exc.value.code == "RequestTimeTooSkewed"


async def test_signed_chunks() -> None:
    data, _ = await _decode(_body(CHUNKS), _auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SEED), [])
    assert data == b"a" * 66560
    tampered = _body(CHUNKS).replace(b"a" * 1024, b"a" * 1023 + b"b")
    with pytest.raises(S3Error) as exc:
        await _decode(tampered, _auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SEED), [])
    assert exc.value.code == "SignatureDoesNotMatch"
    swapped = _body([CHUNKS[1], CHUNKS[0], CHUNKS[2]])
    with pytest.raises(S3Error):
        await _decode(swapped, _auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SEED), [])


async def test_signed_chunks_with_signed_trailer() -> None:
    trailer = f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n"
    auth = _auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", TRAILER_SEED)
    data, trailers = await _decode(_body(TRAILER_CHUNKS, trailer), auth, ["x-amz-checksum-crc32c"])
    assert data == b"a" * 66560 and trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    forged = trailer.replace("sOO8/Q==", "AAAAAA==")
    with pytest.raises(S3Error) as exc:
        await _decode(_body(TRAILER_CHUNKS, forged), auth, ["x-amz-checksum-crc32c"])
    assert exc.value.code == "SignatureDoesNotMatch"


async def test_truncated_body_is_incomplete() -> None:
    with pytest.raises(S3Error) as exc:
        await _decode(_body(CHUNKS)[:40000], _auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SEED), [])
    assert exc.value.code == "IncompleteBody"
