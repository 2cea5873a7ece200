"""Buckets: create, list, head, delete (non-empty refused), versioning, and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.harness import TENANT_A, TENANT_B, StoragedProcess


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_lifecycle(s3: StoragedProcess, bucket_factory: Any) -> None:
    client = s3.client(TENANT_A)
    name = bucket_factory()
    assert name in [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert client.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    with pytest.raises(ClientError) as exc:
        client.create_bucket(Bucket=name)
    assert _error(exc) == ("BucketAlreadyOwnedByYou", 409)
    client.put_object(Bucket=name, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as exc:
        client.delete_bucket(Bucket=name)
    assert _error(exc) == ("BucketNotEmpty", 409)
    client.delete_object(Bucket=name, Key="keep")
    client.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        client.head_bucket(Bucket=name)
    assert _error(exc)[1] == 404
    assert name not in [b["Name"] for b in client.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["UPPER", "ab", "a" * 64, "-start", "end-", "192.168.1.1", "two..dots", "under_score"])
def test_invalid_bucket_names(s3: StoragedProcess, name: str) -> None:
    client = s3.client(TENANT_A)
    with pytest.raises(ClientError) as exc:
        client.create_bucket(Bucket=name)
    assert _error(exc) == ("InvalidBucketName", 400)


def test_tenant_isolation(s3: StoragedProcess, bucket_factory: Any) -> None:
    a, b = s3.client(TENANT_A), s3.client(TENANT_B)
    name = bucket_factory(a)
    a.put_object(Bucket=name, Key="secret", Body=b"tenant a only")
    assert name not in [x["Name"] for x in b.list_buckets()["Buckets"]]
    for call in (lambda: b.get_object(Bucket=name, Key="secret"), lambda: b.list_objects_v2(Bucket=name),
                 lambda: b.put_object(Bucket=name, Key="intruder", Body=b"x"),
                 lambda: b.delete_object(Bucket=name, Key="secret"), lambda: b.delete_bucket(Bucket=name),
                 lambda: b.copy_object(Bucket=bucket_factory(b), Key="stolen", CopySource=f"{name}/secret")):
        with pytest.raises(ClientError) as exc:
            call()
        assert _error(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        b.create_bucket(Bucket=name)
    assert _error(exc) == ("BucketAlreadyExists", 409)
    assert a.get_object(Bucket=name, Key="secret")["Body"].read() == b"tenant a only"


def test_versioning(s3: StoragedProcess, client_a: Any, bucket: str) -> None:
    assert "Status" not in client_a.get_bucket_versioning(Bucket=bucket)
    client_a.put_object(Bucket=bucket, Key="v", Body=b"before versioning")
    client_a.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert client_a.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = client_a.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = client_a.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    assert client_a.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    assert client_a.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    assert client_a.get_object(Bucket=bucket, Key="v", VersionId="null")["Body"].read() == b"before versioning"

    marker = client_a.delete_object(Bucket=bucket, Key="v")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as exc:
        client_a.get_object(Bucket=bucket, Key="v")
    assert _error(exc) == ("NoSuchKey", 404)
    assert client_a.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    versions = client_a.list_object_versions(Bucket=bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in versions["Versions"]] == [(v2, False), (v1, False),
                                                                                ("null", False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in versions["DeleteMarkers"]] == [(marker["VersionId"], True)]

    client_a.delete_object(Bucket=bucket, Key="v", VersionId=marker["VersionId"])  # undelete
    assert client_a.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    client_a.delete_object(Bucket=bucket, Key="v", VersionId=v2)
    assert client_a.get_object(Bucket=bucket, Key="v")["Body"].read() == b"one"

    client_a.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put = client_a.put_object(Bucket=bucket, Key="v", Body=b"suspended")
    assert put["VersionId"] == "null"
    kept = [v["VersionId"] for v in client_a.list_object_versions(Bucket=bucket)["Versions"]]
    assert kept == ["null", v1]  # the earlier null version was replaced, v1 kept
    with pytest.raises(ClientError) as exc:
        client_a.delete_bucket(Bucket=bucket)
    assert _error(exc) == ("BucketNotEmpty", 409)


def test_metrics_and_health_need_no_signature(s3: StoragedProcess, client_a: Any, bucket: str) -> None:
    client_a.list_objects_v2(Bucket=bucket)
    with s3.http() as http:
        metrics = http.get(f"{s3.url}/metrics")
        assert metrics.status_code == 200
        assert 'thecloud_s3_requests_total{op="ListObjectsV2",status="200"}' in metrics.text
        assert http.get(f"{s3.url}/v1/health").json()["status"] == "ok"
