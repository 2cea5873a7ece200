"""Storage hosts for API tests without a storaged: an up host whose (simulated) storaged reports on the loop."""

from __future__ import annotations

from typing import Any

from controller.services import storage_link
from shared.sdk import CloudClient
from tests.api.compute_util import up_host
from tests.api.conftest import ApiServer


def storage_report(api: ApiServer, host_id: str, total_gb: int = 100, free_gb: int | None = None,
                   backend: str = "file", volumes: list[dict[str, Any]] | None = None,
                   snapshots: list[dict[str, Any]] | None = None, s3_endpoint: str | None = None) -> dict[str, Any]:
    """One storaged report, as the agent listener would deliver it."""
    body = {"backend": backend, "capacity": {"total_gb": total_gb, "free_gb": total_gb if free_gb is None else free_gb},
            "s3_endpoint": s3_endpoint, "volumes": volumes or [], "snapshots": snapshots or []}
    return api.run(storage_link.report(api.rt, host_id, body))


def storage_host(api: ApiServer, admin: CloudClient, zone: str | None = None, total_gb: int = 100,
                 backend: str = "file") -> dict[str, Any]:
    """An up compute host that also runs storaged (it reported its capacity)."""
    host = up_host(api, admin, zone=zone)
    storage_report(api, host["id"], total_gb=total_gb, backend=backend)
    return host


def volume_ready(api: ApiServer, volume: dict[str, Any], state: str = "available", **extra: Any) -> None:
    """The volume's storaged reports it created (with a host path), or ``state``."""
    item = {"volume_id": volume["id"], "state": state, "size_gb": volume["size_gb"], "kind": volume["kind"],
            "path": f"/var/lib/thecloud/volumes/{volume['id']}", "format": "ext4", **extra}
    record = api.rt.store.machine.data.storage_hosts[volume["host_id"]]
    storage_report(api, volume["host_id"], total_gb=record["total_gb"], backend=record["backend"], volumes=[item],
                   s3_endpoint=record.get("s3_endpoint"))


def snapshot_ready(api: ApiServer, snapshot: dict[str, Any], host_id: str, state: str = "available") -> None:
    record = api.rt.store.machine.data.storage_hosts[host_id]
    storage_report(api, host_id, total_gb=record["total_gb"], backend=record["backend"],
                   snapshots=[{"snapshot_id": snapshot["id"], "volume_id": snapshot["volume_id"], "state": state}],
                   s3_endpoint=record.get("s3_endpoint"))


def backup_ready(api: ApiServer, backup: dict[str, Any], state: str = "available", size_bytes: int = 1 << 30,
                 sha256: str = "0" * 64) -> None:
    """The snapshot's storaged reports the export done (or ``state``)."""
    with api.rt.view() as data:
        host_id = data.backups[backup["id"]]["host_id"]
        record = dict(data.storage_hosts[host_id])
    body = {"backend": record["backend"], "capacity": {"total_gb": record["total_gb"], "free_gb": record["free_gb"]},
            "s3_endpoint": record.get("s3_endpoint"), "volumes": [], "snapshots": [],
            "backups": [{"backup_id": backup["id"], "state": state, "size_bytes": size_bytes, "sha256": sha256,
                         "error": "disk on fire" if state == "error" else None}]}
    api.run(storage_link.report(api.rt, host_id, body))
