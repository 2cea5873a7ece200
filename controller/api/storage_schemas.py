"""Request and response bodies for volumes, snapshots, backups, S3 credentials and buckets."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from controller.api.compute_schemas import Zone
from controller.api.schemas import Name, Request, Response

SizeGb = Annotated[int, Field(ge=1, le=65536)]
Ref = Annotated[str, Field(min_length=1, max_length=64)]
Backend = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]


class VolumeCreate(Request):
    name: Name
    size_gb: SizeGb
    kind: Literal["filesystem", "block"] = "filesystem"
    zone: Zone | None = None
    backend: Backend | None = None
    from_backup: Ref | None = None


class VolumeResize(Request):
    size_gb: SizeGb


class VolumeAttach(Request):
    instance: Ref
    mount_path: Annotated[str, Field(min_length=2, max_length=1024, pattern=r"^/")] | None = None


class Attachment(Response):
    instance_id: str
    instance: str | None
    mount_path: str | None
    device: str | None


class Volume(Response):
    id: str
    name: str
    tenant_id: str
    size_gb: int
    kind: str
    zone: str | None
    backend: str
    host: str | None
    status: str
    status_reason: str
    attachment: Attachment | None
    device: str | None


class VolumePage(Response):
    items: list[Volume]
    next_marker: str | None


class SnapshotCreate(Request):
    name: Name
    volume: Ref


class SnapshotRestore(Request):
    name: Name
    size_gb: SizeGb | None = None


class Snapshot(Response):
    id: str
    name: str
    tenant_id: str
    volume_id: str
    size_gb: int
    status: str


class SnapshotPage(Response):
    items: list[Snapshot]
    next_marker: str | None


class BackupExport(Request):
    bucket: Annotated[str, Field(min_length=3, max_length=63)]
    key: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^/\x00-\x1f][^\x00-\x1f]*$")] | None = None


class Backup(Response):
    id: str
    tenant_id: str
    snapshot_id: str
    volume_id: str
    volume: str
    bucket: str
    key: str
    size_gb: int
    kind: str
    status: str
    error: str
    created_at: str


class BackupPage(Response):
    items: list[Backup]
    next_marker: str | None


class S3Credential(Response):
    access_key_id: str
    user_id: str
    tenant_id: str
    created_at: str


class S3CredentialCreated(S3Credential):
    secret_access_key: str


class S3CredentialPage(Response):
    items: list[S3Credential]
    next_marker: str | None


class Bucket(Response):
    name: str
    tenant_id: str
    created_by: str
    versioning: str
    created_at: str


class BucketPage(Response):
    items: list[Bucket]
    next_marker: str | None
