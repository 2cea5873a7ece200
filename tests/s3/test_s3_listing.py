"""ListObjectsV2 and ListObjects: prefix, delimiter, pagination (continuation tokens, markers), URL encoding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

KEYS = sorted(["a.txt", "b/1", "b/2", "b/c/1", "c d/e+f", "ü/x", "z", "b/ü"] + [f"many/{i:03d}" for i in range(25)],
              key=lambda k: k.encode())


@pytest.fixture
def filled(client_a: Any, bucket: str) -> str:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client_a.put_object(Bucket=bucket, Key=k, Body=k.encode()), KEYS))
    return bucket


def test_list_v2_all_and_by_prefix(client_a: Any, filled: str) -> None:
    out = client_a.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in out["Contents"]] == KEYS
    assert out["KeyCount"] == len(KEYS) and out["IsTruncated"] is False
    assert out["Contents"][0]["Size"] == len(KEYS[0])
    assert [o["Key"] for o in client_a.list_objects_v2(Bucket=filled, Prefix="b/")["Contents"]] == \
        ["b/1", "b/2", "b/c/1", "b/ü"]


def test_list_v2_delimiter(client_a: Any, filled: str) -> None:
    out = client_a.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["a.txt", "z"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/", "c d/", "many/", "ü/"]
    out = client_a.list_objects_v2(Bucket=filled, Delimiter="/", Prefix="b/")
    assert [o["Key"] for o in out["Contents"]] == ["b/1", "b/2", "b/ü"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/c/"]


def test_list_v2_pagination(client_a: Any, filled: str) -> None:
    seen: list[str] = []
    pages = 0
    for page in client_a.get_paginator("list_objects_v2").paginate(Bucket=filled, PaginationConfig={"PageSize": 4}):
        pages += 1
        seen += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert seen == KEYS and pages == 9
    grouped = []
    for page in client_a.get_paginator("list_objects_v2").paginate(Bucket=filled, Delimiter="/",
                                                                   PaginationConfig={"PageSize": 2}):
        grouped += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert grouped == ["a.txt", "b/", "c d/", "many/", "z", "ü/"]
    after = client_a.list_objects_v2(Bucket=filled, StartAfter="many/020")
    assert [o["Key"] for o in after["Contents"]][:2] == ["many/021", "many/022"]


def test_list_v1_markers(client_a: Any, filled: str) -> None:
    seen: list[str] = []
    for page in client_a.get_paginator("list_objects").paginate(Bucket=filled, PaginationConfig={"PageSize": 5}):
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == KEYS
    out = client_a.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2)
    assert out["IsTruncated"] is True and out["NextMarker"] == "b/"
    nxt = client_a.list_objects(Bucket=filled, Delimiter="/", Marker=out["NextMarker"])
    assert [p["Prefix"] for p in nxt["CommonPrefixes"]] == ["c d/", "many/", "ü/"]
    assert client_a.list_objects(Bucket=filled, Prefix="nothing")["IsTruncated"] is False


def test_list_empty_and_max_keys_zero(client_a: Any, bucket: str) -> None:
    assert client_a.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    client_a.put_object(Bucket=bucket, Key="k", Body=b"")
    assert client_a.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0
