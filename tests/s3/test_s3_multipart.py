"""Multipart uploads: create, upload part, list parts/uploads, complete (ETag rule), abort, and s3transfer."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

MIB = 1 << 20


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_multipart_upload(client_a: Any, bucket: str) -> None:
    parts_data = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(123_457)]
    up = client_a.create_multipart_upload(Bucket=bucket, Key="big", ContentType="video/x-tc",
                                          Metadata={"kind": "multipart"})
    uid = up["UploadId"]
    assert [u["UploadId"] for u in client_a.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    etags = []
    for number in (2, 1, 3):  # parts may arrive in any order
        etags.append((number, client_a.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=number,
                                                   Body=parts_data[number - 1])["ETag"]))
    listed = client_a.list_parts(Bucket=bucket, Key="big", UploadId=uid)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * MIB), (2, 5 * MIB), (3, 123_457)]
    page = client_a.list_parts(Bucket=bucket, Key="big", UploadId=uid, MaxParts=2)
    assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 2
    with pytest.raises(ClientError) as exc:  # the object is not visible before completion
        client_a.head_object(Bucket=bucket, Key="big")
    assert _error(exc)[1] == 404

    ordered = sorted(etags)
    with pytest.raises(ClientError) as exc:
        client_a.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in reversed(ordered)]})
    assert _error(exc) == ("InvalidPartOrder", 400)
    with pytest.raises(ClientError) as exc:
        client_a.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert _error(exc) == ("InvalidPart", 400)

    done = client_a.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in ordered]})
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts_data)).hexdigest() + "-3"
    assert done["ETag"] == f'"{expected}"'
    got = client_a.get_object(Bucket=bucket, Key="big")
    assert got["ETag"] == f'"{expected}"' and got["ContentType"] == "video/x-tc"
    assert got["Metadata"] == {"kind": "multipart"}
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(b"".join(parts_data)).digest()
    ranged = client_a.get_object(Bucket=bucket, Key="big", Range=f"bytes={5 * MIB - 3}-{5 * MIB + 2}")
    assert ranged["Body"].read() == parts_data[0][-3:] + parts_data[1][:3]
    assert client_a.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as exc:
        client_a.list_parts(Bucket=bucket, Key="big", UploadId=uid)
    assert _error(exc) == ("NoSuchUpload", 404)


def test_small_parts_are_refused_and_abort(client_a: Any, bucket: str) -> None:
    uid = client_a.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    e1 = client_a.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=1, Body=b"a" * 1000)["ETag"]
    e2 = client_a.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=2, Body=b"b")["ETag"]
    with pytest.raises(ClientError) as exc:
        client_a.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert _error(exc) == ("EntityTooSmall", 400)
    client_a.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        client_a.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=3, Body=b"c")
    assert _error(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        client_a.upload_part(Bucket=bucket, Key="small", UploadId="nonsense", PartNumber=1, Body=b"c")
    assert _error(exc) == ("NoSuchUpload", 404)


def test_single_part_upload_completes(client_a: Any, bucket: str) -> None:
    uid = client_a.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    etag = client_a.upload_part(Bucket=bucket, Key="one", UploadId=uid, PartNumber=1, Body=b"tiny")["ETag"]
    done = client_a.complete_multipart_upload(Bucket=bucket, Key="one", UploadId=uid,
                                              MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["ETag"] == f'"{hashlib.md5(hashlib.md5(b"tiny").digest()).hexdigest()}-1"'
    assert client_a.get_object(Bucket=bucket, Key="one")["Body"].read() == b"tiny"


def test_transfer_manager_upload_and_download(client_a: Any, bucket: str, tmp_path: Path) -> None:
    """boto3's upload_file/download_file: concurrent parts with CRC32 checksums, ranged parallel downloads."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(13 * MIB))
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
    client_a.upload_file(str(src), bucket, "via/transfer.bin", Config=config)
    head = client_a.head_object(Bucket=bucket, Key="via/transfer.bin")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == 13 * MIB
    dst = tmp_path / "dst.bin"
    client_a.download_file(bucket, "via/transfer.bin", str(dst), Config=config)
    assert dst.read_bytes() == src.read_bytes()
