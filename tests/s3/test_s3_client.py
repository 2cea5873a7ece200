"""storaged's own S3 client (backup transfers): its SigV4 signer against the server's verifier, and streamed
single/multipart uploads and sparse downloads against a real storaged process."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from storaged.s3.catalog import Credential
from storaged.s3.client import S3Client, S3Target, TransferError, Transferred
from storaged.s3.errors import S3Error
from storaged.s3.sigv4 import EMPTY_SHA256, authenticate
from storaged.s3.sigv4_client import object_path, sign
from tests.s3.harness import TENANT_A, StoragedProcess

MIB = 1 << 20


class _Keys:
    async def lookup(self, access_key_id: str) -> Credential | None:
        if access_key_id != TENANT_A.access_key_id:
            return None
        return Credential(TENANT_A.access_key_id, TENANT_A.secret_access_key, TENANT_A.tenant_id, TENANT_A.user_id)


def _verify(method: str, url: str, headers: dict[str, str]) -> Any:
    path, _, query = url.split("127.0.0.1:9", 1)[1].partition("?")
    wire = CIMultiDictProxy(CIMultiDict({**headers, "host": "127.0.0.1:9"}))
    parsed = dict(p.split("=", 1) for p in query.split("&") if p)
    return asyncio.run(authenticate(method, path, query, wire, parsed, _Keys()))


def test_signer_passes_the_servers_verifier_and_a_wrong_secret_does_not() -> None:
    url = ("http://127.0.0.1:9" + object_path("bkt", "thecloud-backups/vol a/snap~1+x.img")
           + "?partNumber=2&uploadId=u%2Fv")
    headers = sign("PUT", url, EMPTY_SHA256, TENANT_A.access_key_id, TENANT_A.secret_access_key)
    auth = _verify("PUT", url, headers)
    assert auth.credential.tenant_id == TENANT_A.tenant_id and auth.payload_hash == EMPTY_SHA256
    bad = sign("PUT", url, EMPTY_SHA256, TENANT_A.access_key_id, "not-the-secret")
    with pytest.raises(S3Error) as err:
        _verify("PUT", url, bad)
    assert err.value.code == "SignatureDoesNotMatch"


def _image(path: Path, size: int) -> str:
    """A sparse file with data at a few places (zeros elsewhere); returns its sha256."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset in (0, size - 4096):
            fh.seek(offset)
            fh.write(os.urandom(4096))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(s3: StoragedProcess, bucket: str, key: str, fn: Callable[[S3Client], Any], secret: str | None = None,
         part_size: int = 5 * MIB) -> Any:
    async def go() -> Any:
        target = S3Target(s3.url, bucket, key, TENANT_A.access_key_id, secret or TENANT_A.secret_access_key)
        async with aiohttp.ClientSession() as session:
            return await fn(S3Client(target, session, part_size))

    return asyncio.run(go())


@pytest.mark.parametrize(("size", "part_size"), [(6 * MIB + 17, 8 * MIB), (12 * MIB + 5, 5 * MIB)],
                         ids=["single-put", "multipart"])
def test_upload_and_sparse_download_round_trip(s3_http: StoragedProcess, tmp_path: Path, size: int,
                                               part_size: int) -> None:
    bucket = f"tc-client-{size}"
    boto = s3_http.client(TENANT_A)
    boto.create_bucket(Bucket=bucket)
    try:
        source, copy = tmp_path / "image", tmp_path / "copy"
        digest = _image(source, size)
        seen: list[int] = []
        up: Transferred = _run(s3_http, bucket, "thecloud-backups/v/x.img",
                               lambda c: c.upload_file(source, seen.append), part_size=part_size)
        assert (up.size, up.sha256) == (size, digest) and seen[-1] == size
        head = boto.head_object(Bucket=bucket, Key="thecloud-backups/v/x.img")
        assert head["ContentLength"] == size and head["ETag"].strip('"') == up.etag
        assert up.etag.endswith("-3") if size > part_size else "-" not in up.etag
        down: Transferred = _run(s3_http, bucket, "thecloud-backups/v/x.img", lambda c: c.download_to(copy))
        assert (down.size, down.sha256) == (size, digest)
        assert copy.read_bytes() == source.read_bytes()
        assert copy.stat().st_blocks * 512 < size // 2, "zero blocks were written as holes"
        assert not boto.list_multipart_uploads(Bucket=bucket).get("Uploads")
    finally:
        for item in boto.list_objects_v2(Bucket=bucket).get("Contents", []):
            boto.delete_object(Bucket=bucket, Key=item["Key"])
        boto.delete_bucket(Bucket=bucket)


def test_refusals_name_the_s3_error(s3_http: StoragedProcess, tmp_path: Path) -> None:
    source = tmp_path / "image"
    _image(source, MIB)
    with pytest.raises(TransferError, match="NoSuchBucket"):
        _run(s3_http, "tc-client-no-such-bucket", "k", lambda c: c.upload_file(source))
    with pytest.raises(TransferError, match="SignatureDoesNotMatch"):
        _run(s3_http, "tc-client-no-such-bucket", "k", lambda c: c.download_to(tmp_path / "x"), secret="wrong")
