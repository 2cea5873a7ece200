"""Objects through boto3 (default config: checksums on): put, get, ranges, head, metadata, copy, deletes."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import crc32c
import pytest
from botocore.exceptions import ClientError

from tests.s3.harness import StoragedProcess


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_put_get_head_delete_with_metadata(s3: StoragedProcess, client_a: Any, bucket: str) -> None:
    seen: list[str] = []
    client_a.meta.events.register("before-send.s3.PutObject",
                                  lambda request, **_: seen.append(_text(request.headers["x-amz-content-sha256"])))
    data = os.urandom(300_000)
    put = client_a.put_object(Bucket=bucket, Key="dir/ünïcode key+1.bin", Body=data, ContentType="application/x-tc",
                              Metadata={"colour": "blue", "owner": "alice"}, CacheControl="no-cache")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert put["ChecksumCRC32"] == crc
    # over HTTPS boto3 streams aws-chunked with a checksum trailer; over HTTP it signs the payload's SHA-256
    expected = "STREAMING-UNSIGNED-PAYLOAD-TRAILER" if s3.tls else hashlib.sha256(data).hexdigest()
    assert seen == [expected]

    got = client_a.get_object(Bucket=bucket, Key="dir/ünïcode key+1.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-tc"
    assert got["Metadata"] == {"colour": "blue", "owner": "alice"}
    assert got["CacheControl"] == "no-cache"
    assert got["ChecksumCRC32"] == crc
    head = client_a.head_object(Bucket=bucket, Key="dir/ünïcode key+1.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]

    client_a.delete_object(Bucket=bucket, Key="dir/ünïcode key+1.bin")
    with pytest.raises(ClientError) as exc:
        client_a.get_object(Bucket=bucket, Key="dir/ünïcode key+1.bin")
    assert _error(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        client_a.head_object(Bucket=bucket, Key="dir/ünïcode key+1.bin")
    assert _error(exc) == ("404", 404)


def test_overwrite_and_empty_object(client_a: Any, bucket: str) -> None:
    client_a.put_object(Bucket=bucket, Key="k", Body=b"first version")
    client_a.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert client_a.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    client_a.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = client_a.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    assert got["ContentType"] == "binary/octet-stream"


def test_ranges(client_a: Any, bucket: str) -> None:
    data = bytes(range(256)) * 40
    client_a.put_object(Bucket=bucket, Key="r", Body=data)
    for header, expected in (("bytes=0-9", data[:10]), ("bytes=100-", data[100:]), ("bytes=-7", data[-7:]),
                             ("bytes=10000-99999", data[10000:]), ("bytes=5-5", data[5:6])):
        got = client_a.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["Body"].read() == expected, header
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith(f"/{len(data)}")
    for bad in ("bytes=10240-", "bytes=20000-20010", "bytes=-0"):
        with pytest.raises(ClientError) as exc:
            client_a.get_object(Bucket=bucket, Key="r", Range=bad)
        assert _error(exc) == ("InvalidRange", 416), bad
    assert client_a.get_object(Bucket=bucket, Key="r", Range="bytes=0-1,5-6")["Body"].read() == data


def test_conditional_requests(client_a: Any, bucket: str) -> None:
    etag = client_a.put_object(Bucket=bucket, Key="c", Body=b"x")["ETag"]
    assert client_a.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"x"
    with pytest.raises(ClientError) as exc:
        client_a.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert _error(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        client_a.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert _error(exc)[1] == 304
    with pytest.raises(ClientError) as exc:
        client_a.put_object(Bucket=bucket, Key="c", Body=b"y", IfNoneMatch="*")
    assert _error(exc) == ("PreconditionFailed", 412)


def test_bad_checksum_and_md5_are_refused(client_a: Any, bucket: str) -> None:
    wrong = base64.b64encode(b"\0\0\0\0").decode()
    with pytest.raises(ClientError) as exc:
        client_a.put_object(Bucket=bucket, Key="bad", Body=b"payload", ChecksumCRC32=wrong)
    assert _error(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        client_a.put_object(Bucket=bucket, Key="bad", Body=b"payload",
                            ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert _error(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        client_a.head_object(Bucket=bucket, Key="bad")
    assert _error(exc)[1] == 404


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA1"])
def test_other_checksum_algorithms(client_a: Any, bucket: str, algorithm: str) -> None:
    data = os.urandom(70_000)
    put = client_a.put_object(Bucket=bucket, Key="sum", Body=data, ChecksumAlgorithm=algorithm)
    got = client_a.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]


def test_crc32c_checksum_is_verified(client_a: Any, bucket: str) -> None:
    """botocore computes CRC32C only with awscrt installed: the value is given, the server checks it."""
    data = os.urandom(70_000)
    value = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    client_a.put_object(Bucket=bucket, Key="sum", Body=data, ChecksumCRC32C=value)
    with pytest.raises(ClientError) as exc:
        client_a.put_object(Bucket=bucket, Key="sum2", Body=data + b"!", ChecksumCRC32C=value)
    assert _error(exc) == ("BadDigest", 400)
    got = client_a.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32C"] == value


def test_copy_object(client_a: Any, bucket_factory: Any) -> None:
    src, dst = bucket_factory(), bucket_factory()
    put = client_a.put_object(Bucket=src, Key="orig", Body=b"copy me", Metadata={"a": "1"}, ContentType="text/x")
    out = client_a.copy_object(Bucket=dst, Key="copy", CopySource={"Bucket": src, "Key": "orig"})
    assert out["CopyObjectResult"]["ETag"] == put["ETag"]
    got = client_a.get_object(Bucket=dst, Key="copy")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/x"
    client_a.copy_object(Bucket=src, Key="orig", CopySource=f"{src}/orig", MetadataDirective="REPLACE",
                         Metadata={"b": "2"}, ContentType="text/y")
    head = client_a.head_object(Bucket=src, Key="orig")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/y"
    with pytest.raises(ClientError) as exc:
        client_a.copy_object(Bucket=src, Key="orig", CopySource=f"{src}/orig")
    assert _error(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        client_a.copy_object(Bucket=dst, Key="x", CopySource=f"{src}/missing")
    assert _error(exc) == ("NoSuchKey", 404)


def test_delete_objects(client_a: Any, bucket: str) -> None:
    for i in range(5):
        client_a.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    out = client_a.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(3)]
                                                         + [{"Key": "d/never-existed"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["d/0", "d/1", "d/2", "d/never-existed"]
    assert [o["Key"] for o in client_a.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/3", "d/4"]
    quiet = client_a.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in quiet


def test_missing_bucket_and_key_errors(client_a: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        client_a.get_object(Bucket="tc-no-such-bucket-anywhere", Key="k")
    assert _error(exc) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as exc:
        client_a.put_object(Bucket=bucket, Key="k" * 1100, Body=b"")
    assert _error(exc) == ("KeyTooLongError", 400)
    with pytest.raises(ClientError) as exc:
        client_a.get_bucket_acl(Bucket=bucket)
    assert _error(exc) == ("NotImplemented", 501)
