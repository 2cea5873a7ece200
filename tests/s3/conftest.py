"""S3 fixtures: one HTTPS and one plain-HTTP storaged per test session, and boto3 clients for two tenants."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3.harness import TENANT_A, TENANT_B, StoragedProcess


def _started(path: Path, tls: bool) -> Iterator[StoragedProcess]:
    server = StoragedProcess(path, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoragedProcess]:
    """HTTPS: boto3's default checksums then send aws-chunked bodies with a CRC32 trailer."""
    yield from _started(tmp_path_factory.mktemp("tc-s3-tls"), tls=True)


@pytest.fixture(scope="session")
def s3_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoragedProcess]:
    """Plain HTTP: boto3 signs the payload's SHA-256 and sends the CRC32 in a header."""
    yield from _started(tmp_path_factory.mktemp("tc-s3-http"), tls=False)


@pytest.fixture(params=["https", "http"])
def s3(request: pytest.FixtureRequest) -> StoragedProcess:
    return request.getfixturevalue("s3_tls" if request.param == "https" else "s3_http")


@pytest.fixture
def client_a(s3: StoragedProcess) -> Any:
    return s3.client(TENANT_A)


@pytest.fixture
def client_b(s3: StoragedProcess) -> Any:
    return s3.client(TENANT_B)


@pytest.fixture
def bucket_factory(s3: StoragedProcess) -> Iterator[Callable[..., str]]:
    """Creates uniquely named buckets; empties and deletes them at teardown."""
    made: list[tuple[Any, str]] = []

    def make(client: Any = None, prefix: str = "tc") -> str:
        client = client or s3.client(TENANT_A)
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name)
        made.append((client, name))
        return name

    yield make
    for client, name in made:
        try:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
                items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                         for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if items:
                    client.delete_objects(Bucket=name, Delete={"Objects": items, "Quiet": True})
            for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
            client.delete_bucket(Bucket=name)
        except client.exceptions.NoSuchBucket:
            pass


@pytest.fixture
def bucket(bucket_factory: Callable[..., str]) -> str:
    return bucket_factory()
