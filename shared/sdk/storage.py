"""The storage resource groups: volumes, snapshots, backups, S3 credentials and buckets."""

from __future__ import annotations

from typing import Any

from shared.sdk.base import ListableResource, Resource, body, query, seg


class VolumesAPI(ListableResource):
    """Volumes of a tenant, on storaged hosts; ``volume`` arguments are ids or names."""

    path = "/v1/volumes"

    def create(self, name: str, size_gb: int, *, kind: str | None = None, zone: str | None = None,
               backend: str | None = None, from_backup: str | None = None, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a volume (``kind`` "filesystem", the default, or "block" for VMs), empty or filled from the
        backup ``from_backup`` (on any storage host with room)."""
        result: dict[str, Any] = self._client.request(
            "POST", self.path, params=query(tenant=tenant),
            json=body(name=name, size_gb=size_gb, kind=kind, zone=zone, backend=backend, from_backup=from_backup),
            idempotency_key=idempotency_key)
        return result

    def get(self, volume: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("GET", f"{self.path}/{seg(volume)}",
                                                      params=query(stale=stale, tenant=tenant))
        return result

    def delete(self, volume: str, *, tenant: str | None = None) -> None:
        """Delete a detached volume without snapshots."""
        self._client.request("DELETE", f"{self.path}/{seg(volume)}", params=query(tenant=tenant))

    def resize(self, volume: str, size_gb: int, *, tenant: str | None = None) -> dict[str, Any]:
        """Grow a volume to ``size_gb``."""
        result: dict[str, Any] = self._client.request("POST", f"{self.path}/{seg(volume)}/resize",
                                                      params=query(tenant=tenant), json={"size_gb": size_gb})
        return result

    def attach(self, volume: str, instance: str, mount_path: str | None = None, *,
               tenant: str | None = None) -> dict[str, Any]:
        """Attach to an instance on the volume's host (containers: at ``mount_path``; VMs: the next disk)."""
        result: dict[str, Any] = self._client.request(
            "POST", f"{self.path}/{seg(volume)}/attach", params=query(tenant=tenant),
            json=body(instance=instance, mount_path=mount_path))
        return result

    def detach(self, volume: str, *, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("POST", f"{self.path}/{seg(volume)}/detach",
                                                      params=query(tenant=tenant))
        return result


class SnapshotsAPI(ListableResource):
    """Snapshots of volumes (list filter: ``volume=``)."""

    path = "/v1/snapshots"

    def create(self, name: str, volume: str, *, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("POST", self.path, params=query(tenant=tenant),
                                                      json={"name": name, "volume": volume},
                                                      idempotency_key=idempotency_key)
        return result

    def get(self, snapshot: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("GET", f"{self.path}/{seg(snapshot)}",
                                                      params=query(stale=stale, tenant=tenant))
        return result

    def delete(self, snapshot: str, *, tenant: str | None = None) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(snapshot)}", params=query(tenant=tenant))

    def restore(self, snapshot: str, name: str, *, size_gb: int | None = None,
                tenant: str | None = None) -> dict[str, Any]:
        """A new volume ``name`` with the snapshot's data (on the snapshot's host)."""
        result: dict[str, Any] = self._client.request("POST", f"{self.path}/{seg(snapshot)}/restore",
                                                      params=query(tenant=tenant),
                                                      json=body(name=name, size_gb=size_gb))
        return result

    def export(self, snapshot: str, bucket: str, *, key: str | None = None, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Export the snapshot to one of the tenant's buckets: a backup record (status ``exporting`` first)."""
        result: dict[str, Any] = self._client.request("POST", f"{self.path}/{seg(snapshot)}/export",
                                                      params=query(tenant=tenant), json=body(bucket=bucket, key=key),
                                                      idempotency_key=idempotency_key)
        return result


class BackupsAPI(ListableResource):
    """Snapshot exports to S3; restore one with ``volumes.create(..., from_backup=id)``."""

    path = "/v1/backups"

    def get(self, backup: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("GET", f"{self.path}/{seg(backup)}",
                                                      params=query(stale=stale, tenant=tenant))
        return result

    def delete(self, backup: str, *, tenant: str | None = None) -> None:
        """Delete the record only: the object stays in its bucket."""
        self._client.request("DELETE", f"{self.path}/{seg(backup)}", params=query(tenant=tenant))


class S3CredentialsAPI(ListableResource):
    """S3 access keys of the calling user; the secret is returned by ``create`` only."""

    path = "/v1/s3/credentials"

    def create(self, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``{"access_key_id", "secret_access_key", "user_id", "tenant_id", "created_at"}``."""
        result: dict[str, Any] = self._client.request("POST", self.path, idempotency_key=idempotency_key)
        return result

    def delete(self, access_key_id: str) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(access_key_id)}")


class S3API(Resource):
    """``client.s3.credentials``."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.credentials = S3CredentialsAPI(client)


class BucketsAPI(ListableResource):
    """The tenant's S3 buckets (read only: buckets are created with the S3 API)."""

    path = "/v1/buckets"
