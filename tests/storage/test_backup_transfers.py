"""Backup transfers of storaged against a real S3 server (a storaged process) and the real file backend: the
reconciler exports a snapshot and restores it into a new, larger volume; a restore whose object does not match
what was exported (sha256) is refused and no volume is made."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storaged.backends.base import VolumeBackend
from storaged.backup_transfers import BackupTransfers
from storaged.volumes import VolumeReconciler, parse_desired
from tests.s3.harness import TENANT_A, StoragedProcess
from tests.storage.pools import backend_pool, why_not

BUCKET = "tc-backup-transfers"


@pytest.fixture
def file_backend(tmp_path: Path) -> Iterator[VolumeBackend]:
    reason = why_not("file")
    if reason:
        pytest.skip(f"file backend: {reason}")
    with backend_pool("file", tmp_path / "pool") as made:
        yield made


@pytest.fixture
def s3_http(tmp_path: Path) -> Iterator[StoragedProcess]:
    server = StoragedProcess(tmp_path / "s3")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_http: StoragedProcess) -> Iterator[str]:
    client = s3_http.client(TENANT_A)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield BUCKET
    finally:
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)


def _source(s3: StoragedProcess, backup_id: str, **extra: Any) -> dict[str, Any]:
    return {"backup_id": backup_id, "endpoint": s3.url, "bucket": BUCKET, "key": f"b/{backup_id}.img",
            "access_key_id": TENANT_A.access_key_id, "secret_access_key": TENANT_A.secret_access_key, **extra}


async def _until(reconciler: VolumeReconciler, doc: dict[str, Any], done: Any) -> dict[str, Any]:
    desired = parse_desired(doc)
    for _ in range(200):
        _, report = await reconciler.run_once(desired)
        if done(report):
            return report
        await asyncio.sleep(0.1)
    raise AssertionError(f"no result: {report}")


def test_export_and_restore_through_s3(file_backend: VolumeBackend, s3_http: StoragedProcess, bucket: str,
                                       tmp_path: Path) -> None:
    vol = file_backend.create("tcb-src", 0.0625, "filesystem")
    (Path(vol.path) / "f").write_text("precious")
    file_backend.snapshot("tcb-src", "tcb-snap")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        transfers = BackupTransfers(file_backend, tmp_path / "scratch", part_size=5 << 20)
        reconciler = VolumeReconciler(file_backend, transfers)
        try:
            base: dict[str, Any] = {"revision": 1, "volumes": [{"volume_id": "tcb-src", "size_gb": 0.0625}],
                                    "snapshots": [{"snapshot_id": "tcb-snap", "volume_id": "tcb-src"}]}
            export = _source(s3_http, "bak-1", snapshot_id="tcb-snap")
            exported = await _until(reconciler, {**base, "exports": [export]},
                                    lambda r: r["backups"][0]["state"] != "exporting")
            row = exported["backups"][0]
            bad = {"volume_id": "tcb-bad", "size_gb": 0.125,
                   "from_backup": _source(s3_http, "bak-1", size_bytes=row.get("size_bytes"), sha256="0" * 64,
                                         format=row.get("format"))}
            good = {"volume_id": "tcb-dst", "size_gb": 0.125,
                    "from_backup": _source(s3_http, "bak-1", size_bytes=row.get("size_bytes"),
                                           sha256=row.get("sha256"), format=row.get("format"))}
            doc = {**base, "revision": 2, "volumes": [*base["volumes"], bad, good]}
            restored = await _until(reconciler, doc, lambda r: all(
                v["state"] in ("available", "error") for v in r["volumes"]))
            return row, restored, {v["volume_id"]: v for v in restored["volumes"]}
        finally:
            await transfers.close()

    row, _, volumes = asyncio.run(scenario())
    assert row["state"] == "available" and row["format"] == "tar" and len(row["sha256"]) == 64
    assert volumes["tcb-dst"]["state"] == "available", volumes["tcb-dst"]
    assert (Path(volumes["tcb-dst"]["path"]) / "f").read_text() == "precious"
    assert volumes["tcb-dst"]["size_gb"] == 0.125
    assert volumes["tcb-bad"]["state"] == "error" and "sha256" in volumes["tcb-bad"]["error"]
    assert file_backend.get_volume("tcb-bad") is None
    assert not any((tmp_path / "scratch").iterdir()), "the downloaded image is removed"


def test_file_backup_restores_on_a_btrfs_host_through_s3(file_backend: VolumeBackend, s3_http: StoragedProcess,
                                                         bucket: str, tmp_path: Path) -> None:
    """Host loss: the export of one host's file backend restores on another host's btrfs, the format (tar)
    travelling with the backup source as the controller sends it."""
    reason = why_not("btrfs")
    if reason:
        pytest.skip(f"btrfs backend: {reason}")
    vol = file_backend.create("tcb-src", 0.0625, "filesystem")
    (Path(vol.path) / "f").write_text("precious")
    file_backend.snapshot("tcb-src", "tcb-snap")

    async def scenario(btrfs: VolumeBackend) -> tuple[dict[str, Any], dict[str, Any]]:
        exporter = BackupTransfers(file_backend, tmp_path / "scratch-a", part_size=5 << 20)
        importer = BackupTransfers(btrfs, tmp_path / "scratch-b", part_size=5 << 20)
        try:
            doc: dict[str, Any] = {"revision": 1, "volumes": [{"volume_id": "tcb-src", "size_gb": 0.0625}],
                                   "snapshots": [{"snapshot_id": "tcb-snap", "volume_id": "tcb-src"}],
                                   "exports": [_source(s3_http, "bak-x", snapshot_id="tcb-snap")]}
            exported = await _until(VolumeReconciler(file_backend, exporter), doc,
                                    lambda r: r["backups"][0]["state"] != "exporting")
            row = exported["backups"][0]
            restore = {"volume_id": "tcb-dst", "size_gb": 0.125,
                       "from_backup": _source(s3_http, "bak-x", size_bytes=row.get("size_bytes"),
                                              sha256=row.get("sha256"), format=row.get("format"))}
            restored = await _until(VolumeReconciler(btrfs, importer), {"revision": 1, "volumes": [restore]},
                                    lambda r: r["volumes"][0]["state"] in ("available", "error"))
            return row, restored["volumes"][0]
        finally:
            await exporter.close()
            await importer.close()

    with backend_pool("btrfs", tmp_path / "host-b") as btrfs:
        row, volume = asyncio.run(scenario(btrfs))
        assert (row["state"], row["format"]) == ("available", "tar"), row
        assert volume["state"] == "available", volume
        assert (Path(volume["path"]) / "f").read_text() == "precious"
        assert btrfs.get_volume("tcb-dst") is not None
