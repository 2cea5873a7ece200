"""Container image references through the API: a reference that breaks Docker's grammar is a 400 naming the
problem, for one instance and for a batch, and nothing is written; VMs keep naming registered images."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.sdk import CloudClient
from tests.api.compute_util import register_image, up_host
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer

SMALL: dict[str, Any] = {"vcpus": 1, "memory_mb": 256, "disk_gb": 1}
SHA = "0123456789abcdef" * 4


def _post(api: ApiServer, key: str, path: str, body: Any) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=10.0) as client:
        return client.post(path, json=body, headers=bearer(key))


def _mark(api: ApiServer) -> tuple[int, int]:
    with api.rt.view() as data:
        return data.revision, len(data.audit)


def _nothing_written(api: ApiServer, cadmin: CloudClient, dev: CloudClient, team: TenantWorld,
                     mark: tuple[int, int]) -> None:
    """No instance, claim or name; the only Raft commands since ``mark`` are the audit records of the refusals."""
    assert dev.instances.list_all() == []
    assert all(h["allocated"] == {} for h in cadmin.hosts.list_all())
    with api.rt.view() as data:
        assert data.instance_names.get(team.id, {}) == {}
        added = list(data.audit)[mark[1]:]
        assert [(r["action"], r["outcome"], r["status"]) for r in added] == [
            ("instance.create", "failed", 400), ("instance.create_batch", "failed", 400)]
        assert data.revision == mark[0] + len(added)


@pytest.mark.parametrize(("image", "problem"), [
    ("Nginx", "repository name 'Nginx' must be lower case"),
    ("no spaces", "whitespace"),
    ("nginx:", "the tag after ':' is empty"),
    ("nginx:-1", "tag '-1'"),
    ("team//app", "empty path component"),
    ("localhost:70000/app", "port '70000' must be a number from 1 to 65535"),
    ("app@sha256:abc", "a sha256 digest is 64 lower-case hex digits"),
    ("a" * 256, "256 characters long (at most 255)"),
])
def test_a_bad_reference_is_a_400_naming_the_problem(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                      team: TenantWorld, image: str, problem: str) -> None:
    up_host(capi, cadmin)
    key = team["developer"].key
    mark = _mark(capi)
    single = assert_error(_post(capi, key, "/v1/instances", {"name": "x", "image": image, **SMALL}),
                          400, "bad_request")["message"]
    assert single.startswith(f"invalid container image {image!r}: ") and problem in single, single
    batch = assert_error(_post(capi, key, "/v1/instances/batch", {"template": {"image": image, **SMALL},
                                                                   "name_prefix": "b", "count": 2}),
                         400, "bad_request")["message"]
    assert batch == single
    _nothing_written(capi, cadmin, dev, team, mark)


def test_good_references_are_accepted(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    up_host(capi, cadmin)
    for n, image in enumerate(["nginx", "nginx:1.27", "local/busybox", "registry.example.com:5000/team/app:v1",
                               f"ghcr.io/org/app:1@sha256:{SHA}", "[::1]:5000/app"]):
        assert dev.instances.create(f"ok-{n}", image, **SMALL)["image"] == image


def test_vms_still_name_registered_images(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                          team: TenantWorld) -> None:
    up_host(capi, cadmin)
    image = register_image(cadmin, "Guest-Image")  # a registered name need not be a Docker reference
    assert dev.instances.create("vm", image["name"], kind="vm", **SMALL)["image"] == "Guest-Image"
    refused = assert_error(_post(capi, team["developer"].key, "/v1/instances",
                                 {"name": "vm2", "kind": "vm", "image": "nginx:1.27", **SMALL}), 400, "bad_request")
    assert refused["message"] == "unknown image 'nginx:1.27'; see GET /v1/images"
