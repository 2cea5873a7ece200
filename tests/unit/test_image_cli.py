"""`cloud image ...` and the SDK's images group on httpx.MockTransport: uploads stream each file once with
its sha256 in the path, then register; usage errors are caught before anything is sent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_compute_cli import FakeAPI

IMAGE = {"name": "tiny", "format": "qcow2", "disk": {"sha256": "a" * 64, "size": 3}, "kernel": None, "initrd": None,
         "cmdline": "", "size": 3, "holders": ["127.0.0.1:8700"], "instances": 0, "created_at": "2026-01-01T00:00:00Z"}


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THECLOUD_CONFIG", str(tmp_path / "config.toml"))
    for name in ("THECLOUD_URL", "THECLOUD_API_KEY", "THECLOUD_TOKEN", "THECLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def test_import_uploads_each_blob_then_registers(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("disk", "kernel", "initrd")}
    for i, path in enumerate(files.values()):
        path.write_bytes(bytes([i]) * (100_000 + i))
    uploaded: dict[str, bytes] = {}

    def upload(request: httpx.Request) -> httpx.Response:
        sha = request.url.path.rsplit("/", 1)[1]
        data = request.read()
        assert hashlib.sha256(data).hexdigest() == sha and request.headers["Content-Length"] == str(len(data))
        uploaded[sha] = data
        return httpx.Response(200, json={"sha256": sha, "size": len(data), "holders": ["c1"]})

    routes: dict[tuple[str, str], Any] = {("POST", "/v1/images"): lambda r: httpx.Response(201, json=IMAGE)}
    for path in files.values():
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        routes[("PUT", f"/v1/images/blobs/{sha}")] = upload
    api = FakeAPI(routes)
    result = api.run("image", "import", "tiny", "--file", str(files["disk"]), "--kernel", str(files["kernel"]),
                     "--initrd", str(files["initrd"]), "--cmdline", "console=ttyS0", "--no-progress", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == IMAGE
    assert sorted(uploaded.values()) == sorted(p.read_bytes() for p in files.values())
    register = json.loads(api.requests[-1].content)
    assert register == {"name": "tiny", "format": "qcow2", "cmdline": "console=ttyS0",
                        **{f"{k}_sha256": hashlib.sha256(p.read_bytes()).hexdigest() for k, p in files.items()}}


def test_import_from_url_and_usage_errors(tmp_path: Path) -> None:
    api = FakeAPI({("POST", "/v1/images"): lambda r: httpx.Response(201, json=IMAGE)})
    result = api.run("image", "import", "tiny", "--url", "https://example.test/d.qcow2", "--sha256", "b" * 64)
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].content) == {"name": "tiny", "format": "qcow2",
                                                   "url": "https://example.test/d.qcow2", "sha256": "b" * 64}
    disk = tmp_path / "d"
    disk.write_bytes(b"x")
    for args, message in ((["tiny"], "either --file or --url"),
                          (["tiny", "--file", str(disk), "--url", "http://x.test/"], "either --file or --url"),
                          (["tiny", "--url", "http://x.test/", "--kernel", str(disk)], "go with --file"),
                          (["tiny", "--file", str(disk), "--initrd", str(disk)], "need --kernel")):
        result = api.run("image", "import", *args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert len(api.requests) == 1


def test_list_show_delete() -> None:
    api = FakeAPI({("GET", "/v1/images"): lambda r: httpx.Response(200, json={"items": [IMAGE], "next_marker": None}),
                   ("GET", "/v1/images/tiny"): lambda r: httpx.Response(200, json=IMAGE),
                   ("DELETE", "/v1/images/tiny"): lambda r: httpx.Response(204)})
    listed = api.run("image", "list")
    assert listed.exit_code == 0 and "tiny" in listed.output and "qcow2" in listed.output, listed.output
    shown = api.run("image", "show", "tiny")
    assert shown.exit_code == 0 and "127.0.0.1:8700" in shown.output, shown.output
    deleted = api.run("image", "delete", "tiny")
    assert deleted.exit_code == 0 and "Deleted image tiny." in deleted.output
