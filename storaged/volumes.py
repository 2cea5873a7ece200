"""The volume reconciler: the controller's desired volumes and snapshots vs. what the backend holds.

Level-triggered and idempotent: one pass compares, acts, and returns a readable reason plus the report the
controller receives. Data is never deleted because it is missing from the desired document: only an explicit
``"wanted": "deleted"`` tombstone deletes (an empty document sent by mistake must not wipe a host); what the
backend holds but the document does not name is reported as ``orphan`` and left alone. One volume's failure
never stops the others.

Order inside a pass: plain volumes (create, grow), then new snapshots, then volumes restored from snapshots,
then snapshot deletions, then volume deletions (so a document that deletes a volume and its snapshots works in
one pass, and a restore can still read a snapshot that the same document deletes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from storaged.backends.base import (
    BackendError,
    InUse,
    SnapshotInfo,
    VolumeBackend,
    VolumeInfo,
    check_id,
    check_kind,
    check_size,
    gb_to_bytes,
)
from storaged.backup_transfers import BackupTransfers, TransferSource, parse_source

log = logging.getLogger("thecloud.storaged.volumes")
T = TypeVar("T")


class DesiredError(ValueError):
    """The desired-state document itself is malformed (not one entry of it)."""


@dataclass(frozen=True)
class WantedVolume:
    volume_id: str
    size_gb: float
    kind: str
    from_snapshot: str | None
    wanted: str
    from_backup: TransferSource | None = None


@dataclass(frozen=True)
class WantedSnapshot:
    snapshot_id: str
    volume_id: str
    wanted: str


@dataclass
class Desired:
    revision: int
    volumes: dict[str, WantedVolume] = field(default_factory=dict)
    snapshots: dict[str, WantedSnapshot] = field(default_factory=dict)
    exports: dict[str, TransferSource] = field(default_factory=dict)  # backup id -> where to upload


def parse_desired(doc: Any) -> Desired:
    """Checks and converts a desired-state document; entries with bad fields raise DesiredError."""
    if not isinstance(doc, dict):
        raise DesiredError("the desired state must be a JSON object")
    try:
        desired = Desired(revision=int(doc.get("revision", 0)))
        for item in doc.get("volumes") or []:
            wanted = str(item.get("wanted", "present"))
            if wanted not in ("present", "deleted"):
                raise DesiredError(f"volume {item.get('volume_id')!r}: wanted must be present or deleted")
            volume_id = check_id(str(item["volume_id"]), "volume id")
            source = item.get("from_snapshot")
            desired.volumes[volume_id] = WantedVolume(
                volume_id=volume_id,
                size_gb=check_size(item["size_gb"]) if wanted == "present" else float(item.get("size_gb") or 0),
                kind=check_kind(str(item.get("kind") or "filesystem")),
                from_snapshot=check_id(str(source), "snapshot id") if source else None, wanted=wanted,
                from_backup=parse_source(item["from_backup"]) if item.get("from_backup") else None)
        for item in doc.get("snapshots") or []:
            wanted = str(item.get("wanted", "present"))
            if wanted not in ("present", "deleted"):
                raise DesiredError(f"snapshot {item.get('snapshot_id')!r}: wanted must be present or deleted")
            snapshot_id = check_id(str(item["snapshot_id"]), "snapshot id")
            desired.snapshots[snapshot_id] = WantedSnapshot(snapshot_id, check_id(str(item["volume_id"]),
                                                                                  "volume id"), wanted)
        for item in doc.get("exports") or []:
            export = parse_source(item)
            if export.snapshot_id is None:
                raise DesiredError(f"export {export.backup_id!r}: no snapshot_id")
            check_id(export.snapshot_id, "snapshot id")
            desired.exports[export.backup_id] = export
    except (KeyError, TypeError, ValueError, AttributeError, BackendError) as exc:
        raise DesiredError(f"malformed desired state: {exc}") from exc
    return desired


@dataclass
class _Pass:
    actions: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # volume or snapshot id -> error
    pending: set[str] = field(default_factory=set)  # volumes being restored from a backup

    def reason(self) -> str:
        parts = self.actions + [f"{key}: {err}" for key, err in sorted(self.errors.items())]
        return "; ".join(parts) if parts else "no change"


class VolumeReconciler:
    def __init__(self, backend: VolumeBackend, transfers: BackupTransfers | None = None) -> None:
        self.backend = backend
        self.transfers = transfers

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def run_once(self, desired: Desired | None) -> tuple[str, dict[str, Any]]:
        """One pass. Without desired state (nothing heard yet) nothing is touched, only reported."""
        run = _Pass()
        if desired is not None:
            await self._apply(desired, run)
        report = await self._report(desired, run)
        return run.reason(), report

    async def _apply(self, desired: Desired, run: _Pass) -> None:
        volumes = {v.volume_id: v for v in await self._call(self.backend.list_volumes)}
        snapshots = {s.snapshot_id: s for s in await self._call(self.backend.list_snapshots)}
        present = [v for v in desired.volumes.values() if v.wanted == "present"]
        for want in (v for v in present if not v.from_snapshot):
            await self._ensure_volume(want, volumes.get(want.volume_id), run)
        for snap in (s for s in desired.snapshots.values() if s.wanted == "present"):
            if snap.snapshot_id not in snapshots:
                await self._step(run, snap.snapshot_id, f"snapshot {snap.snapshot_id} of {snap.volume_id}",
                                 self.backend.snapshot, snap.volume_id, snap.snapshot_id)
        self._exports(desired, run)
        for want in (v for v in present if v.from_snapshot):
            await self._ensure_volume(want, volumes.get(want.volume_id), run)
        for snap in (s for s in desired.snapshots.values() if s.wanted == "deleted"):
            if snap.snapshot_id in snapshots:
                await self._step(run, snap.snapshot_id, f"deleted snapshot {snap.snapshot_id}",
                                 self.backend.delete_snapshot, snap.snapshot_id)
        for want in (v for v in desired.volumes.values() if v.wanted == "deleted"):
            if want.volume_id in volumes:
                await self._step(run, want.volume_id, f"deleted {want.volume_id}", self.backend.delete,
                                 want.volume_id)

    def _exports(self, desired: Desired, run: _Pass) -> None:
        for export in desired.exports.values():
            if self.transfers is None:
                run.errors[export.backup_id] = "this storaged does not do backup transfers"
            elif self.transfers.export(export):
                run.actions.append(f"exporting snapshot {export.snapshot_id} to {export.bucket}/{export.key}")
        if self.transfers is not None:
            self.transfers.prune({f"export:{b}" for b in desired.exports}
                                 | {f"restore:{v.volume_id}" for v in desired.volumes.values() if v.from_backup})

    def _restore(self, want: WantedVolume, source: TransferSource, run: _Pass) -> None:
        if self.transfers is None:
            run.errors[want.volume_id] = "this storaged does not do backup transfers"
            return
        state, error = self.transfers.restore(want.volume_id, want.size_gb, want.kind, source)
        if state == "error":
            run.errors[want.volume_id] = f"restore from backup {source.backup_id} failed: {error}"
        elif state != "done":
            run.pending.add(want.volume_id)
            if state == "started":
                run.actions.append(f"restoring {want.volume_id} from backup {source.backup_id}")

    async def _ensure_volume(self, want: WantedVolume, found: VolumeInfo | None, run: _Pass) -> None:
        if found is None and want.from_backup is not None:
            self._restore(want, want.from_backup, run)
        elif found is None:
            if want.from_snapshot:
                await self._step(run, want.volume_id, f"restored {want.volume_id} from {want.from_snapshot}",
                                 self.backend.create_from_snapshot, want.volume_id, want.from_snapshot,
                                 want.size_gb, want.kind)
            else:
                await self._step(run, want.volume_id, f"created {want.volume_id}", self.backend.create,
                                 want.volume_id, want.size_gb, want.kind)
        elif found.kind != want.kind:
            run.errors[want.volume_id] = f"exists as a {found.kind} volume, not {want.kind}"
        elif gb_to_bytes(want.size_gb) > gb_to_bytes(found.size_gb):
            await self._step(run, want.volume_id, f"grew {want.volume_id} to {want.size_gb:g} GB",
                             self.backend.resize, want.volume_id, want.size_gb)
        elif gb_to_bytes(want.size_gb) < gb_to_bytes(found.size_gb):
            run.errors[want.volume_id] = (f"is {found.size_gb:g} GB: shrinking to {want.size_gb:g} GB is not "
                                          f"supported (volumes only grow)")

    async def _step(self, run: _Pass, key: str, done: str, fn: Callable[..., object], *args: Any) -> None:
        try:
            await self._call(fn, *args)
        except InUse as exc:
            run.errors[key] = str(exc)
        except BackendError as exc:
            log.warning("volume operation failed", extra={"target": key, "error": str(exc)})
            run.errors[key] = str(exc)
        except Exception as exc:
            log.exception("volume operation crashed", extra={"target": key})
            run.errors[key] = f"internal error: {exc.__class__.__name__}: {exc}"
        else:
            run.actions.append(done)

    async def _report(self, desired: Desired | None, run: _Pass) -> dict[str, Any]:
        volumes = {v.volume_id: v for v in await self._call(self.backend.list_volumes)}
        snapshots = {s.snapshot_id: s for s in await self._call(self.backend.list_snapshots)}
        capacity = await self._call(self.backend.capacity)
        wanted_v = desired.volumes if desired else {}
        wanted_s = desired.snapshots if desired else {}
        out_v = [self._volume_row(vid, wanted_v.get(vid), volumes.get(vid), run.errors.get(vid))
                 for vid in sorted(set(wanted_v) | set(volumes))]
        for row in out_v:
            if row["volume_id"] in run.pending and row["state"] == "error":
                row.update(state="creating", error=None)
        out_s = [self._snapshot_row(sid, wanted_s.get(sid), snapshots.get(sid), run.errors.get(sid))
                 for sid in sorted(set(wanted_s) | set(snapshots))]
        return {"backend": self.backend.name, "revision": desired.revision if desired else None,
                # whole GB, as the controller records host capacity
                "capacity": {"total_gb": int(capacity.total_gb), "free_gb": int(capacity.free_gb)},
                "volumes": out_v, "snapshots": out_s,
                "backups": self.transfers.export_rows(desired.exports) if self.transfers and desired else []}

    @staticmethod
    def _volume_row(volume_id: str, want: WantedVolume | None, found: VolumeInfo | None,
                    error: str | None) -> dict[str, Any]:
        if want is None:
            state = "orphan"
        elif want.wanted == "deleted":
            state = "deleted" if found is None else "error"
        else:
            state = "error" if error or found is None else "available"
        if state == "error" and not error:
            error = "not deleted yet" if found is not None else "not created yet"
        return {"volume_id": volume_id, "state": state, "size_gb": found.size_gb if found else None,
                "kind": found.kind if found else (want.kind if want else None),
                "path": found.path if found else None, "format": found.format if found else None,
                "error": error if state == "error" else None}

    @staticmethod
    def _snapshot_row(snapshot_id: str, want: WantedSnapshot | None, found: SnapshotInfo | None,
                      error: str | None) -> dict[str, Any]:
        if want is None:
            state = "orphan"
        elif want.wanted == "deleted":
            state = "deleted" if found is None else "error"
        else:
            state = "error" if error or found is None else "available"
        if state == "error" and not error:
            error = "not deleted yet" if found is not None else "not created yet"
        return {"snapshot_id": snapshot_id, "volume_id": found.volume_id if found else (want.volume_id if want
                                                                                        else None),
                "state": state, "size_gb": found.size_gb if found else None,
                "error": error if state == "error" else None}
