"""Authentication on a live server: bad signatures, unknown keys, presigned URLs, signed aws-chunked uploads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import crc32c
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.s3.harness import REGION, TENANT_A, StoragedProcess


def _xml_error(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def test_wrong_secret_is_403_signature_xml(s3: StoragedProcess, bucket: str) -> None:
    bad = s3.client(TENANT_A, secret="not-the-secret")
    with pytest.raises(ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="x", Body=b"data")
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    url = bad.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "x"})
    with s3.http() as http:
        response = http.get(url)
    assert response.status_code == 403 and response.headers["content-type"] == "application/xml"
    error = _xml_error(response.content)
    assert error["Code"] == "SignatureDoesNotMatch" and error["RequestId"] == response.headers["x-amz-request-id"]


def test_unknown_key_and_anonymous_requests(s3: StoragedProcess, bucket: str) -> None:
    from tests.s3.harness import Keys

    stranger = s3.client(Keys("AKIATCNOBODY00000000", "whatever", "t", "u"))
    with pytest.raises(ClientError) as exc:
        stranger.list_buckets()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    with s3.http() as http:
        response = http.get(f"{s3.url}/{bucket}")
    assert response.status_code == 403 and _xml_error(response.content)["Code"] == "AccessDenied"


def test_presigned_get_and_put(s3: StoragedProcess, client_a: Any, bucket: str) -> None:
    put_url = client_a.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/signed.txt"},
                                              ExpiresIn=300)
    with s3.http() as http:
        assert http.put(put_url, content=b"uploaded with a presigned URL").status_code == 200
        get_url = client_a.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "pre/signed.txt",
                                  "ResponseContentDisposition": "attachment; filename=x.txt"}, ExpiresIn=300)
        response = http.get(get_url)
        assert response.status_code == 200 and response.content == b"uploaded with a presigned URL"
        assert response.headers["content-disposition"] == "attachment; filename=x.txt"
        assert http.get(get_url, headers={"Range": "bytes=0-7"}).content == b"uploaded"
        tampered = get_url.replace("pre/signed.txt", "pre/other.txt")
        response = http.get(tampered)
        assert response.status_code == 403 and _xml_error(response.content)["Code"] == "SignatureDoesNotMatch"


def test_expired_presigned_url(s3_http: StoragedProcess) -> None:
    client = s3_http.client(TENANT_A)
    bucket = f"tc-expiry-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    try:
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
        time.sleep(2.1)
        with s3_http.http() as http:
            response = http.get(url)
        assert response.status_code == 403
        error = _xml_error(response.content)
        assert error["Code"] == "AccessDenied" and "expired" in error["Message"]
    finally:
        client.delete_object(Bucket=bucket, Key="k")
        client.delete_bucket(Bucket=bucket)


def test_signature_v2_is_refused_clearly(s3_http: StoragedProcess) -> None:
    with s3_http.http() as http:
        response = http.get(f"{s3_http.url}/some-bucket/k?AWSAccessKeyId=AKIATCTENANTA0000001&Signature=x&"
                            "Expires=9999999999")
    assert response.status_code == 400 and "AWS4-HMAC-SHA256" in _xml_error(response.content)["Message"]


def _sign_seed(s3: StoragedProcess, url: str, headers: dict[str, str]) -> AWSRequest:
    """botocore's generic SigV4 signer (not the S3 one, which would replace the payload hash) signs the headers."""
    request = AWSRequest(method="PUT", url=url, headers=headers)
    SigV4Auth(Credentials(TENANT_A.access_key_id, TENANT_A.secret_access_key), "s3", REGION).add_auth(request)
    return request


def _chunked_body(request: AWSRequest, chunks: list[bytes], trailer: str) -> bytes:
    """aws-chunked with chunk signatures chained from the seed (the algorithm the vector test pins down)."""
    auth = request.headers["Authorization"]
    seed = auth.rsplit("Signature=", 1)[1]
    amz_date = request.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key = ("AWS4" + TENANT_A.secret_access_key).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    out, prev = b"", seed
    for chunk in [*chunks, b""]:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, hashlib.sha256(b"").hexdigest(),
                             hashlib.sha256(chunk).hexdigest()])
        prev = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={prev}\r\n".encode() + chunk
        out += b"\r\n" if chunk else b""
    trailer_line = f"{trailer}\n"
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev,
                         hashlib.sha256(trailer_line.encode()).hexdigest()])
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return out + f"{trailer}\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()


def test_signed_aws_chunked_upload_with_crc32c_trailer(s3: StoragedProcess, client_a: Any, bucket: str) -> None:
    chunks = [b"x" * 70_000, b"y" * 1000]
    data = b"".join(chunks)
    crc = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    url = f"{s3.url}/{bucket}/chunked/signed.bin"
    headers = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32c"}
    for trailer_value, status in ((base64.b64encode(b"\0\0\0\0").decode(), 400), (crc, 200)):
        request = _sign_seed(s3, url, headers)
        body = _chunked_body(request, chunks, f"x-amz-checksum-crc32c:{trailer_value}")
        with s3.http() as http:
            response = http.put(url, headers=dict(request.headers.items()), content=body)
        assert response.status_code == status, response.text
    got = client_a.get_object(Bucket=bucket, Key="chunked/signed.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32C"] == crc
    assert got.get("ContentEncoding") is None  # aws-chunked was the transfer, not the object's encoding
