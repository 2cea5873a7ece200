"""The volume reconciler against the fake backend: tombstones, orphans, ordering, per-volume errors."""

from __future__ import annotations

from typing import Any

import pytest

from storaged.backends.fake import FakeBackend
from storaged.volumes import Desired, DesiredError, VolumeReconciler, parse_desired


def doc(rev: int, volumes: list[dict[str, Any]] | None = None,
        snapshots: list[dict[str, Any]] | None = None) -> Desired:
    return parse_desired({"revision": rev, "volumes": volumes or [], "snapshots": snapshots or []})


def vol(volume_id: str, size: float = 1, kind: str = "filesystem", wanted: str = "present",
        from_snapshot: str | None = None) -> dict[str, Any]:
    return {"volume_id": volume_id, "size_gb": size, "kind": kind, "from_snapshot": from_snapshot, "wanted": wanted}


def snap(snapshot_id: str, volume_id: str, wanted: str = "present") -> dict[str, Any]:
    return {"snapshot_id": snapshot_id, "volume_id": volume_id, "wanted": wanted}


def rows(report: dict[str, Any], key: str = "volumes") -> dict[str, dict[str, Any]]:
    id_key = "volume_id" if key == "volumes" else "snapshot_id"
    return {r[id_key]: r for r in report[key]}


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(total_gb=100)


async def test_create_then_no_change(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    desired = doc(1, [vol("a", 2), vol("b", 1, "block")])
    reason, report = await rec.run_once(desired)
    assert reason == "created a; created b"
    assert report["backend"] == "fake" and report["revision"] == 1
    assert report["capacity"] == {"total_gb": 100, "free_gb": 97}
    assert rows(report)["a"] == {"volume_id": "a", "state": "available", "size_gb": 2, "kind": "filesystem",
                                 "path": str(backend.mounts_dir / "a"), "format": None, "error": None}
    assert rows(report)["b"]["format"] == "raw"
    assert await rec.run_once(desired) == ("no change", report)


async def test_missing_from_the_document_is_an_orphan_never_deleted(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    await rec.run_once(doc(1, [vol("a"), vol("b")], [snap("s", "a")]))
    reason, report = await rec.run_once(doc(2))  # an empty document, by mistake
    assert reason == "no change"
    assert {k: r["state"] for k, r in rows(report).items()} == {"a": "orphan", "b": "orphan"}
    assert rows(report, "snapshots")["s"]["state"] == "orphan"
    assert set(backend.volumes) == {"a", "b"} and set(backend.snapshots) == {"s"}
    reason, _ = await rec.run_once(None)  # nothing heard from the controller yet
    assert reason == "no change"


async def test_tombstones_delete_snapshots_before_their_volume(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    await rec.run_once(doc(1, [vol("a")], [snap("s1", "a"), snap("s2", "a")]))
    reason, report = await rec.run_once(doc(2, [vol("a", wanted="deleted")],
                                            [snap("s1", "a", "deleted"), snap("s2", "a", "deleted")]))
    assert reason == "deleted snapshot s1; deleted snapshot s2; deleted a"
    assert rows(report)["a"]["state"] == "deleted"
    assert {r["state"] for r in report["snapshots"]} == {"deleted"}
    reason, report = await rec.run_once(doc(3, [vol("a", wanted="deleted")]))
    assert reason == "no change" and rows(report)["a"]["state"] == "deleted" and backend.volumes == {}


async def test_delete_with_snapshots_is_refused_as_an_error(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    await rec.run_once(doc(1, [vol("a")], [snap("s1", "a"), snap("s2", "a")]))
    reason, report = await rec.run_once(doc(2, [vol("a", wanted="deleted")], [snap("s1", "a"), snap("s2", "a")]))
    assert reason.startswith("a: volume has 2 snapshots")
    row = rows(report)["a"]
    assert row["state"] == "error" and row["error"].startswith("volume has 2 snapshots")
    assert "a" in backend.volumes


async def test_snapshot_then_restore_in_one_pass_and_grow(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    reason, report = await rec.run_once(doc(1, [vol("a", 1), vol("r", 3, from_snapshot="s")], [snap("s", "a")]))
    assert reason == "created a; snapshot s of a; restored r from s"
    assert rows(report)["r"]["size_gb"] == 3
    assert rows(report, "snapshots")["s"] == {"snapshot_id": "s", "volume_id": "a", "state": "available",
                                              "size_gb": 1, "error": None}
    reason, report = await rec.run_once(doc(2, [vol("a", 4), vol("r", 3, from_snapshot="s")], [snap("s", "a")]))
    assert reason == "grew a to 4 GB"
    assert rows(report)["a"]["size_gb"] == 4


async def test_one_failure_does_not_stop_the_others(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    backend.fail["create:bad"] = "disk on fire"
    desired = doc(1, [vol("bad"), vol("good"), vol("r", from_snapshot="nosuch")], [snap("s", "missing")])
    reason, report = await rec.run_once(desired)
    assert reason == ("created good; bad: disk on fire; r: snapshot nosuch not found; "
                      "s: volume missing not found")
    states = {k: (r["state"], r["error"]) for k, r in rows(report).items()}
    assert states == {"bad": ("error", "disk on fire"), "good": ("available", None),
                      "r": ("error", "snapshot nosuch not found")}
    assert rows(report, "snapshots")["s"]["state"] == "error"
    del backend.fail["create:bad"]
    reason, _ = await rec.run_once(desired)  # level-triggered: the next pass retries
    assert reason.startswith("created bad;")


async def test_shrink_and_kind_change_are_errors_not_actions(backend: FakeBackend) -> None:
    rec = VolumeReconciler(backend)
    await rec.run_once(doc(1, [vol("a", 2), vol("b", 1)]))
    reason, report = await rec.run_once(doc(2, [vol("a", 1), vol("b", 1, "block")]))
    assert reason == ("a: is 2 GB: shrinking to 1 GB is not supported (volumes only grow); "
                      "b: exists as a filesystem volume, not block")
    assert rows(report)["a"]["size_gb"] == 2 and rows(report)["a"]["state"] == "error"
    assert backend.calls == ["create:a", "create:b"]


async def test_an_unexpected_exception_becomes_an_error_row(backend: FakeBackend, monkeypatch:
                                                            pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(backend, "snapshot", boom)
    rec = VolumeReconciler(backend)
    reason, report = await rec.run_once(doc(1, [vol("a")], [snap("s", "a")]))
    assert reason == "created a; s: internal error: RuntimeError: bug"
    assert rows(report)["a"]["state"] == "available"


@pytest.mark.parametrize("bad, message", [
    ([], "must be a JSON object"),
    ({"volumes": [{"size_gb": 1}]}, "malformed desired state"),
    ({"volumes": [vol("a", -1)]}, "invalid size"),
    ({"volumes": [vol("../x")]}, "invalid volume id"),
    ({"volumes": [vol("a", kind="tape")]}, "invalid volume kind"),
    ({"volumes": [vol("a", wanted="gone")]}, "wanted must be present or deleted"),
])
def test_malformed_documents_are_rejected(bad: Any, message: str) -> None:
    with pytest.raises(DesiredError, match=message):
        parse_desired(bad)
