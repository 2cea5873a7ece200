"""`cloud volume ...` and `cloud snapshot ...`."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_done, emit_page

VOLUME_COLUMNS = ("name", "size_gb", "kind", "status", "host", "device", "created_at")
SNAPSHOT_COLUMNS = ("name", "volume", "size_gb", "status", "created_at")


@click.group(cls=CloudGroup)
def volume() -> None:
    """Volumes (on storage hosts)."""


@volume.command("create")
@click.argument("name")
@click.option("--size", "size_gb", type=click.IntRange(min=1), required=True, help="Size in GB.")
@click.option("--kind", type=click.Choice(["filesystem", "block"]), help="filesystem (default) or block (VMs).")
@click.option("--zone", help="Availability zone.")
@click.option("--backend", help="Storage backend hint (lvm, btrfs, file).")
@click.option("--from-backup", "from_backup", metavar="BACKUP",
              help="Fill the volume from this backup (on any storage host with room).")
@tenant_option
@click.pass_obj
def create(state: CliState, name: str, size_gb: int, kind: str | None, zone: str | None, backend: str | None,
           from_backup: str | None, tenant: str | None) -> None:
    """Create a volume (empty, or restored from a backup)."""
    emit(state.output, state.client().volumes.create(name, size_gb, kind=kind, zone=zone, backend=backend,
                                                     from_backup=from_backup, tenant=tenant))


@volume.command("list")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List volumes."""
    emit_page(state.output, list_args.fetch(state.client().volumes), VOLUME_COLUMNS)


@volume.command("show")
@click.argument("volume_ref", metavar="VOLUME")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, volume_ref: str, stale: bool, tenant: str | None) -> None:
    """Show a volume."""
    emit(state.output, state.client().volumes.get(volume_ref, stale=stale, tenant=tenant))


@volume.command("delete")
@click.argument("volume_ref", metavar="VOLUME")
@tenant_option
@click.pass_obj
def delete(state: CliState, volume_ref: str, tenant: str | None) -> None:
    """Delete a detached volume without snapshots."""
    state.client().volumes.delete(volume_ref, tenant=tenant)
    emit_done(state.output, f"Deleting volume {volume_ref}.", {"volume": volume_ref, "deleted": True})


@volume.command("resize")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--size", "size_gb", type=click.IntRange(min=1), required=True, help="New size in GB (grow only).")
@tenant_option
@click.pass_obj
def resize(state: CliState, volume_ref: str, size_gb: int, tenant: str | None) -> None:
    """Grow a volume."""
    emit(state.output, state.client().volumes.resize(volume_ref, size_gb, tenant=tenant))


@volume.command("attach")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--instance", required=True, help="Instance (id or name) on the volume's host.")
@click.option("--mount-path", help="Where a container sees it (absolute); VMs get the next disk.")
@tenant_option
@click.pass_obj
def attach(state: CliState, volume_ref: str, instance: str, mount_path: str | None, tenant: str | None) -> None:
    """Attach a volume to an instance."""
    emit(state.output, state.client().volumes.attach(volume_ref, instance, mount_path, tenant=tenant))


@volume.command("detach")
@click.argument("volume_ref", metavar="VOLUME")
@tenant_option
@click.pass_obj
def detach(state: CliState, volume_ref: str, tenant: str | None) -> None:
    """Detach a volume."""
    emit(state.output, state.client().volumes.detach(volume_ref, tenant=tenant))


@click.group(cls=CloudGroup)
def snapshot() -> None:
    """Volume snapshots."""


@snapshot.command("create")
@click.argument("name")
@click.option("--volume", "volume_ref", required=True, help="The volume to snapshot (id or name).")
@tenant_option
@click.pass_obj
def create_snapshot(state: CliState, name: str, volume_ref: str, tenant: str | None) -> None:
    """Snapshot a volume."""
    emit(state.output, state.client().snapshots.create(name, volume_ref, tenant=tenant))


@snapshot.command("list")
@list_options()
@click.option("--volume", "volume_ref", help="Only this volume's snapshots.")
@click.pass_obj
def list_snapshots(state: CliState, list_args: ListArgs, volume_ref: str | None) -> None:
    """List snapshots."""
    emit_page(state.output, list_args.fetch(state.client().snapshots, volume=volume_ref), SNAPSHOT_COLUMNS)


@snapshot.command("show")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@stale_option
@tenant_option
@click.pass_obj
def show_snapshot(state: CliState, snapshot_ref: str, stale: bool, tenant: str | None) -> None:
    """Show a snapshot."""
    emit(state.output, state.client().snapshots.get(snapshot_ref, stale=stale, tenant=tenant))


@snapshot.command("delete")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@tenant_option
@click.pass_obj
def delete_snapshot(state: CliState, snapshot_ref: str, tenant: str | None) -> None:
    """Delete a snapshot."""
    state.client().snapshots.delete(snapshot_ref, tenant=tenant)
    emit_done(state.output, f"Deleting snapshot {snapshot_ref}.", {"snapshot": snapshot_ref, "deleted": True})


@snapshot.command("restore")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--name", required=True, help="Name of the new volume.")
@click.option("--size", "size_gb", type=click.IntRange(min=1), help="Size in GB (default: the snapshot's).")
@tenant_option
@click.pass_obj
def restore(state: CliState, snapshot_ref: str, name: str, size_gb: int | None, tenant: str | None) -> None:
    """Restore a snapshot into a new volume (on the snapshot's host)."""
    emit(state.output, state.client().snapshots.restore(snapshot_ref, name, size_gb=size_gb, tenant=tenant))


@snapshot.command("export")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--bucket", required=True, help="One of your S3 buckets.")
@click.option("--key", help="Object key (default: thecloud-backups/<volume>/<snapshot id>.img).")
@tenant_option
@click.pass_obj
def export(state: CliState, snapshot_ref: str, bucket: str, key: str | None, tenant: str | None) -> None:
    """Export a snapshot to an S3 bucket (a backup, restorable on any host)."""
    emit(state.output, state.client().snapshots.export(snapshot_ref, bucket, key=key, tenant=tenant))
