"""Attaching volumes to instances: one instance per volume, on the volume's host.

Containers get a filesystem volume bind-mounted at an absolute ``mount_path``; VMs get a block volume as their
next virtio disk (``device`` vdc, vdd, ...: vda is the VM's root overlay and vdb its cloud-init seed). Every
change bumps the instance's ``spec_rev`` and touches its host, so the agent applies it.
"""

from __future__ import annotations

import posixpath
import string
from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.registry import handles
from controller.state.volumes import get_volume, settled_status

KIND_FOR = {"container": "filesystem", "vm": "block"}
DEVICES = tuple(f"vd{letter}" for letter in string.ascii_lowercase[2:])


def attached(data: StateData, instance_id: str) -> list[dict[str, Any]]:
    return [data.volumes[v] for v in data.instance_volumes.get(instance_id, ()) if v in data.volumes]


def required_host(data: StateData, instance_id: str) -> str | None:
    """The host an instance with volumes must run on (its volumes'), or None."""
    for volume in attached(data, instance_id):
        return str(volume["host_id"])
    return None


def check(data: StateData, volume: dict[str, Any], instance: dict[str, Any], host_id: str | None,
          mount_path: str | None, taken: set[str]) -> None:
    """Raises unless ``volume`` may be attached to ``instance`` (placed on ``host_id``); changes nothing."""
    name = volume["name"]
    if volume["tenant_id"] != instance["tenant_id"]:
        raise not_found("volume", volume["id"])
    if volume["attachment"]:
        other = data.instances.get(volume["attachment"]["instance_id"], {})
        raise conflict(f"volume {name} is already attached to instance "
                       f"{other.get('name', volume['attachment']['instance_id'])}; detach it first")
    if volume["wanted"] == "deleted" or volume["status"] != "available":
        raise conflict(f"volume {name} is {volume['status']}; attach it once it is available")
    if instance.get("desired") == "deleted":
        raise conflict(f"instance {instance['name']} is being deleted")
    needed = KIND_FOR.get(instance["kind"], "filesystem")
    if volume["kind"] != needed:
        raise conflict(f"a {instance['kind']} needs a {needed} volume; volume {name} is {volume['kind']}")
    if host_id != volume["host_id"]:
        where = data.hosts.get(host_id or "", {}).get("name", "no host")
        raise conflict(f"instance {instance['name']} is on {where} but volume {name} is on host "
                       f"{data.hosts.get(volume['host_id'], {}).get('name', volume['host_id'])}; "
                       "a volume attaches only to instances on its own host")
    if instance["kind"] == "container":
        if not mount_path or not posixpath.isabs(mount_path) or posixpath.normpath(mount_path) == "/":
            raise ApplyError(422, "validation_failed", "mount_path must be an absolute path other than /")
        if posixpath.normpath(mount_path) in taken:
            raise conflict(f"instance {instance['name']} already has a volume at {mount_path}")


def _taken_paths(data: StateData, instance_id: str) -> set[str]:
    return {posixpath.normpath(v["attachment"]["mount_path"]) for v in attached(data, instance_id)
            if v["attachment"].get("mount_path")}


def _next_device(data: StateData, instance_id: str) -> str:
    used = {v["attachment"].get("device") for v in attached(data, instance_id)}
    for device in DEVICES:
        if device not in used:
            return device
    raise conflict("no free virtio disk name left on this instance")


def link(data: StateData, volume: dict[str, Any], instance: dict[str, Any], mount_path: str | None,
         now: float) -> None:
    """Records the attachment (after ``check``)."""
    device = _next_device(data, instance["id"]) if instance["kind"] == "vm" else None
    volume["attachment"] = {"instance_id": instance["id"], "mount_path": mount_path if instance["kind"] != "vm"
                            else None, "device": device}
    volume["status"] = "in-use"
    volume["updated_at"] = now
    data.instance_volumes.setdefault(instance["id"], []).append(volume["id"])
    _changed(data, instance)


def unlink(data: StateData, volume: dict[str, Any], now: float) -> None:
    instance_id = volume["attachment"]["instance_id"]
    volume["attachment"] = None
    if volume["status"] == "in-use":
        volume["status"] = settled_status(volume)
    volume["updated_at"] = now
    ids = data.instance_volumes.get(instance_id, [])
    if volume["id"] in ids:
        ids.remove(volume["id"])
    if not ids:
        data.instance_volumes.pop(instance_id, None)
    instance = data.instances.get(instance_id)
    if instance is not None:
        _changed(data, instance)


def _changed(data: StateData, instance: dict[str, Any]) -> None:
    instance["spec_rev"] = instance.get("spec_rev", 0) + 1
    host = data.hosts.get(instance.get("host_id") or "")
    if host is not None:
        host["desired_rev"] = data.revision


def check_many(data: StateData, instance: dict[str, Any], host_id: str, wanted: list[dict[str, Any]]) -> None:
    """For a new instance: every ``{"volume_id", "mount_path"}`` may be attached (distinct volumes and paths)."""
    taken: set[str] = set()
    seen: set[str] = set()
    for item in wanted:
        volume = get_volume(data, item["volume_id"])
        if volume["id"] in seen:
            raise conflict(f"volume {volume['name']} is named twice")
        seen.add(volume["id"])
        check(data, volume, instance, host_id, item.get("mount_path"), taken)
        if item.get("mount_path"):
            taken.add(posixpath.normpath(item["mount_path"]))


def link_many(data: StateData, instance: dict[str, Any], wanted: list[dict[str, Any]], now: float) -> None:
    for item in wanted:
        link(data, data.volumes[item["volume_id"]], instance, item.get("mount_path"), now)


def release_all(data: StateData, instance_id: str, now: float) -> None:
    """An instance went away: its volumes stay, detached."""
    for volume in attached(data, instance_id):
        unlink(data, volume, now)
    data.instance_volumes.pop(instance_id, None)


@handles("volume.attach")
def attach(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    volume = get_volume(data, args["id"])
    instance = data.instances.get(args["instance_id"])
    if instance is None or instance["tenant_id"] != volume["tenant_id"]:
        raise not_found("instance", args["instance_id"])
    mount_path = args.get("mount_path")
    check(data, volume, instance, instance.get("host_id"), mount_path, _taken_paths(data, instance["id"]))
    link(data, volume, instance, mount_path, ctx["time"])
    return volume


@handles("volume.detach")
def detach(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    volume = get_volume(data, args["id"])
    if not volume["attachment"]:
        raise conflict(f"volume {volume['name']} is not attached")
    unlink(data, volume, ctx["time"])
    return volume
