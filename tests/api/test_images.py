"""VM images through the API: streamed blob uploads verified by sha256, registration (from blobs or a URL),
refusals that leave nothing behind, deletion while in use, and VM instances that must name a known image."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.services import agent_link
from controller.services import image_duties as image_duties_module
from controller.services import images as images_service
from controller.services.image_duties import ImageDuties
from shared.blobs import BlobDir
from shared.sdk import CloudClient
from shared.sdk.errors import CloudError
from tests.api.compute_util import register_image, report_status, up_host
from tests.api.conftest import ApiServer, assert_error, bearer, make_tenant, serve_api, unique

OCTET = {"Content-Type": "application/octet-stream"}
SMALL = {"vcpus": 1, "memory_mb": 64, "disk_gb": 1}


@pytest.fixture(scope="module")
def iapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server of its own, so its blob store holds only what these tests put there."""
    with serve_api(tmp_path_factory.mktemp("images")) as server:
        yield server


@pytest.fixture(scope="module")
def iadmin(iapi: ApiServer) -> Iterator[CloudClient]:
    with iapi.client() as client:
        yield client


@pytest.fixture(scope="module")
def raw(iapi: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=iapi.url, timeout=30.0, headers=bearer(iapi.admin_key)) as client:
        yield client


def store(api: ApiServer) -> BlobDir:
    assert api.rt.images is not None
    return api.rt.images


def blob(content: bytes | None = None) -> tuple[str, bytes]:
    data = content if content is not None else os.urandom(4096)
    return hashlib.sha256(data).hexdigest(), data


def known_blobs(api: ApiServer) -> set[str]:
    with api.rt.view() as data:
        return set(data.image_blobs)


def test_upload_is_kept_only_when_the_sha256_matches(iapi: ApiServer, raw: httpx.Client) -> None:
    sha, data = blob()
    wrong = hashlib.sha256(b"something else").hexdigest()
    before = set(store(iapi).names())
    error = assert_error(raw.put(f"/v1/images/blobs/{wrong}", content=data, headers=OCTET), 422, "digest_mismatch")
    assert sha in error["message"] and "nothing was stored" in error["message"]
    assert set(store(iapi).names()) == before and store(iapi).temp_files() == []
    assert wrong not in known_blobs(iapi) and sha not in known_blobs(iapi)

    r = raw.put(f"/v1/images/blobs/{sha}", content=data, headers=OCTET)
    assert r.status_code == 200, r.text
    assert (r.json()["sha256"], r.json()["size"], r.json()["holders"]) == (sha, len(data), ["127.0.0.1:9"])
    with open(store(iapi).path(sha), "rb") as f:
        assert f.read() == data
    assert raw.put(f"/v1/images/blobs/{sha}", content=data, headers=OCTET).status_code == 200  # idempotent
    assert_error(raw.put("/v1/images/blobs/not-a-hash", content=data, headers=OCTET), 400, "bad_request")


def test_upload_streams_past_the_json_body_limit(iapi: ApiServer, raw: httpx.Client) -> None:
    """Uploads are read in pieces, not by the 1 MiB-limited body reader; chunked bodies work too."""
    sha, data = blob(os.urandom(3 * 1024 * 1024 + 17))

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    r = raw.put(f"/v1/images/blobs/{sha}", content=pieces(), headers=OCTET)
    assert r.status_code == 200, r.text
    assert store(iapi).size(sha) == len(data)


def test_upload_over_the_limit_leaves_nothing(iapi: ApiServer, raw: httpx.Client,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_service, "MAX_IMAGE_BYTES", 1000)
    sha, data = blob(os.urandom(5000))
    before = set(store(iapi).names())
    assert_error(raw.put(f"/v1/images/blobs/{sha}", content=data, headers=OCTET), 413, "payload_too_large")

    def pieces() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        yield data[:2500]
        yield data[2500:]

    assert_error(raw.put(f"/v1/images/blobs/{sha}", content=pieces(), headers=OCTET), 413, "payload_too_large")
    assert set(store(iapi).names()) == before and store(iapi).temp_files() == []
    assert sha not in known_blobs(iapi)


def test_register_needs_uploaded_blobs(iapi: ApiServer, iadmin: CloudClient, raw: httpx.Client) -> None:
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    name = unique("img")
    error = assert_error(raw.post("/v1/images", json={"name": name, "disk_sha256": missing}), 409, "blob_missing")
    assert missing in error["message"] and "PUT /v1/images/blobs/" in error["message"]
    disk, _ = blob()
    register = {"name": name, "disk_sha256": disk}
    assert_error(raw.post("/v1/images", json={**register, "url": "http://127.0.0.1:1/x"}), 422, "validation_failed")
    assert_error(raw.post("/v1/images", json={**register, "initrd_sha256": missing}), 422, "validation_failed")
    assert_error(raw.post("/v1/images", json={**register, "format": "vmdk"}), 422, "validation_failed")
    assert name not in {i["name"] for i in iadmin.images.list_all()}
    with pytest.raises(CloudError) as exc:
        iadmin.images.get(name)
    assert exc.value.status == 404


def test_register_show_list_and_duplicates(iapi: ApiServer, iadmin: CloudClient, tmp_path: Path) -> None:
    files = {}
    for what in ("disk", "kernel", "initrd"):
        files[what] = tmp_path / what
        files[what].write_bytes(os.urandom(2048))
    seen: list[tuple[int, int, str]] = []
    name = unique("direct")
    image = iadmin.images.import_file(name, str(files["disk"]), format="raw", kernel=str(files["kernel"]),
                                      initrd=str(files["initrd"]), cmdline="console=ttyS0 quiet",
                                      progress=lambda done, total, what: seen.append((done, total, what)))
    assert image["name"] == name and image["format"] == "raw" and image["cmdline"] == "console=ttyS0 quiet"
    for what in ("disk", "kernel", "initrd"):
        assert image[what] == {"sha256": hashlib.sha256(files[what].read_bytes()).hexdigest(), "size": 2048}
    assert (image["size"], image["holders"], image["instances"], image["source"]) == (3 * 2048, ["127.0.0.1:9"], 0,
                                                                                         "upload")
    assert {what for _, _, what in seen} == {f"{verb} {role}" for verb in ("hash", "upload")
                                             for role in ("disk", "kernel", "initrd")}
    assert iadmin.images.get(name) == image
    assert name in {i["name"] for i in iadmin.images.list_all()}
    with pytest.raises(CloudError) as exc:
        iadmin.images.register(name, image["disk"]["sha256"], format="raw")
    assert (exc.value.status, exc.value.code) == (409, "conflict")
    # every tenant sees images; only the cluster admin changes them
    team = make_tenant(iadmin, "img")
    with iapi.client(api_key=team["viewer"].key) as viewer:
        assert viewer.images.get(name)["name"] == name
        with pytest.raises(CloudError) as exc:
            viewer.images.delete(name)
        assert exc.value.status == 403


def test_vm_with_an_unknown_image_is_refused_and_leaves_nothing(iapi: ApiServer, iadmin: CloudClient) -> None:
    up_host(iapi, iadmin)
    team = make_tenant(iadmin, "vm")
    with iapi.client(api_key=team["developer"].key) as dev:
        quota_before = dev.quota.get()["usage"]
        with pytest.raises(CloudError) as exc:
            dev.instances.create("vm1", "no-such-image", kind="vm", **SMALL)
        assert (exc.value.status, exc.value.code) == (400, "bad_request")
        assert exc.value.message == "unknown image 'no-such-image'; see GET /v1/images"
        assert dev.instances.list_all() == []
        assert dev.quota.get()["usage"] == quota_before
        # containers keep Docker references: the controller does not check them
        assert dev.instances.create("c1", "no-such-image", **SMALL)["status"] == "scheduled"


def test_vm_instances_carry_the_image_blobs_and_keep_it_in_use(iapi: ApiServer, iadmin: CloudClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    host = up_host(iapi, iadmin, vcpu=64, memory_mb=65536)
    image = register_image(iadmin, unique("base"))
    team = make_tenant(iadmin, "use")
    with iapi.client(api_key=team["developer"].key) as dev:
        vm = dev.instances.create("vm1", image["name"], kind="vm", user_data="#cloud-config\n", **SMALL,
                                  zone=host["zone"])
    with iapi.rt.view() as data:
        desired = agent_link.desired_for(data, vm["host_id"])
    (item,) = [i for i in desired["instances"] if i["id"] == vm["id"]]
    assert item["vm_image"] == {"name": image["name"], "format": "raw", "disk": image["disk"], "kernel": None,
                                "initrd": None, "cmdline": ""}
    assert iadmin.images.get(image["name"])["instances"] == 1

    with pytest.raises(CloudError) as exc:
        iadmin.images.delete(image["name"])
    assert (exc.value.status, exc.value.code) == (409, "conflict") and "vm1" in exc.value.message
    assert iadmin.images.get(image["name"])["name"] == image["name"]

    iadmin.instances.delete(vm["id"], tenant=team.name)
    report_status(iapi, vm["host_id"], vm, "gone")
    iadmin.images.delete(image["name"])
    sha = image["disk"]["sha256"]
    assert sha not in known_blobs(iapi)  # no other image uses it: forgotten
    # every controller's duty then removes the file (after a grace period for uploads in flight)
    assert store(iapi).has(sha)
    monkeypatch.setattr(image_duties_module, "ORPHAN_FILE_SECONDS", 0.0)
    reason = iapi.run(ImageDuties(iapi.rt).run_once("127.0.0.1:9", leader=True))
    assert reason is not None and "removed" in reason and sha[:12] in reason
    assert not store(iapi).has(sha)


def test_lost_copies_are_dropped_from_the_record(iapi: ApiServer, iadmin: CloudClient) -> None:
    image = register_image(iadmin, unique("lost"))
    sha = image["disk"]["sha256"]
    os.unlink(store(iapi).path(sha))
    reason = iapi.run(ImageDuties(iapi.rt).run_once("127.0.0.1:9", leader=True))
    assert reason == f"lost my copy of 1 blob(s) ({sha[:12]}); copying them again"
    assert iadmin.images.get(image["name"])["holders"] == []


# -- imports from a URL ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("served")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    thread.join(5)


def test_import_from_a_url(iapi: ApiServer, iadmin: CloudClient, files_server: tuple[str, Path]) -> None:
    base, root = files_server
    content = os.urandom(2 * 1024 * 1024 + 3)
    (root / "disk.qcow2").write_bytes(content)
    sha = hashlib.sha256(content).hexdigest()
    before = set(store(iapi).names())

    with pytest.raises(CloudError) as exc:
        iadmin.images.import_url(unique("bad"), f"{base}/disk.qcow2", sha256="0" * 64, format="raw")
    assert (exc.value.status, exc.value.code) == (422, "digest_mismatch")
    with pytest.raises(CloudError) as exc:
        iadmin.images.import_url(unique("bad"), f"{base}/missing.qcow2", format="raw")
    assert (exc.value.status, exc.value.code) == (422, "download_failed") and "404" in exc.value.message
    assert set(store(iapi).names()) == before and store(iapi).temp_files() == []

    name = unique("fromurl")
    image = iadmin.images.import_url(name, f"{base}/disk.qcow2", sha256=sha, format="raw",
                                     idempotency_key=f"import-{name}")
    assert (image["disk"], image["source"], image["holders"]) == ({"sha256": sha, "size": len(content)},
                                                                   f"{base}/disk.qcow2", ["127.0.0.1:9"])
    assert store(iapi).has(sha)
    # a repeat of the same request is answered from the first outcome, without downloading again
    (root / "disk.qcow2").unlink()
    assert iadmin.images.import_url(name, f"{base}/disk.qcow2", sha256=sha, format="raw",
                                    idempotency_key=f"import-{name}") == image
    with pytest.raises(CloudError) as exc:
        iadmin.images.import_url(name, f"{base}/disk.qcow2", format="raw")
    assert (exc.value.status, exc.value.code) == (409, "conflict")


def test_an_upload_cut_off_midway_leaves_nothing(iapi: ApiServer) -> None:
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    host, port = iapi.url.removeprefix("http://").split(":")
    head = (f"PUT /v1/images/blobs/{sha} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {iapi.admin_key}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + data[:100_000])
        time.sleep(0.2)

    def refused() -> list[dict[str, Any]]:
        with iapi.rt.view() as state:
            return [a for a in state.audit if a["action"] == "image.blob.upload" and a["target"] == sha]

    deadline = time.monotonic() + 5
    while not refused() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [a["status"] for a in refused()] == [400]
    assert not store(iapi).has(sha) and store(iapi).temp_files() == [] and sha not in known_blobs(iapi)
