"""VM images: cluster-wide (visible to every tenant), registered and deleted by the cluster admin.

An image names content-addressed blobs: a disk (qcow2 or raw) and, for direct kernel boot, a kernel, an
optional initrd and a kernel command line. The blobs themselves live on the controllers' disks; the state
records each blob's size and which controllers (by Raft address) hold a verified copy.
"""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, invalid, not_found
from controller.state.registry import handles

IMAGE_FORMATS = ("qcow2", "raw")
BOOT_BLOBS = ("kernel", "initrd")


def blob_refs(image: dict[str, Any]) -> dict[str, str]:
    """role (disk, kernel, initrd) -> sha256 of the blobs an image uses."""
    return {role: image[role]["sha256"] for role in ("disk", *BOOT_BLOBS) if image.get(role)}


def referenced_blobs(data: StateData) -> set[str]:
    return {sha for image in data.images.values() for sha in blob_refs(image).values()}


def users_of(data: StateData, name: str) -> list[dict[str, Any]]:
    """The VM instances created from image ``name``."""
    return [i for i in data.instances.values() if i.get("kind") == "vm" and i.get("image") == name]


def boot_spec(data: StateData, name: str) -> dict[str, Any]:
    """What an agent needs to boot a VM from image ``name``: its blobs (hash and size), format and cmdline.

    Copied into the instance when it is created, so the instance keeps booting the same bits."""
    image = data.images.get(name)
    if image is None:
        raise ApplyError(400, "bad_request", f"unknown image {name!r}; see GET /v1/images")
    return {"name": name, "format": image["format"], "disk": dict(image["disk"]),
            "kernel": dict(image["kernel"]) if image.get("kernel") else None,
            "initrd": dict(image["initrd"]) if image.get("initrd") else None, "cmdline": image.get("cmdline", "")}


@handles("image.blob.add")
def add_blob(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """A controller stored a verified copy of a blob (an upload, a download or a copy from a peer)."""
    sha, size, holder = args["sha256"], int(args["size"]), args["holder"]
    blob = data.image_blobs.get(sha)
    if blob is None:
        blob = {"sha256": sha, "size": size, "holders": [], "created_at": ctx["time"]}
        data.image_blobs[sha] = blob
    elif blob["size"] != size:
        raise conflict(f"blob {sha} is known with {blob['size']} bytes, not {size}")
    if holder not in blob["holders"]:
        blob["holders"].append(holder)
    return blob


@handles("image.blob.drop")
def drop_blob(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """A controller lost its copy (its file is gone): it no longer counts as a holder."""
    blob = data.image_blobs.get(args["sha256"])
    if blob is None:
        raise not_found("blob", args["sha256"])
    if args["holder"] in blob["holders"]:
        blob["holders"].remove(args["holder"])
    return blob


def forget_holder(data: StateData, holder: str) -> list[str]:
    """A controller left the cluster: its copies count no more. Returns the blobs it was listed for."""
    held = [sha for sha, blob in data.image_blobs.items() if holder in blob["holders"]]
    for sha in held:
        data.image_blobs[sha]["holders"].remove(holder)
    return held


@handles("image.blob.forget")
def forget_blob(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """An upload that was never registered as (part of) an image: every controller may delete its copy."""
    sha = args["sha256"]
    if sha not in data.image_blobs:
        raise not_found("blob", sha)
    if sha in referenced_blobs(data):
        raise conflict(f"blob {sha} belongs to an image")
    del data.image_blobs[sha]
    return {"forgotten": sha}


@handles("image.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    name = args["name"]
    if name in data.images:
        raise conflict(f"image {name!r} already exists")
    if args["format"] not in IMAGE_FORMATS:
        raise invalid(f"format must be one of {', '.join(IMAGE_FORMATS)}")
    if (args.get("initrd_sha256") or args.get("cmdline")) and not args.get("kernel_sha256"):
        raise invalid("an initrd or a kernel command line needs a kernel (kernel_sha256)")
    image: dict[str, Any] = {"name": name, "format": args["format"], "cmdline": args.get("cmdline") or "",
                             "source": args.get("source") or "upload", "created_at": ctx["time"],
                             "created_by": ctx.get("actor_name", "")}
    for role in ("disk", *BOOT_BLOBS):
        sha = args.get(f"{role}_sha256")
        if not sha:
            image[role] = None
            continue
        blob = data.image_blobs.get(sha)
        if blob is None or not blob["holders"]:
            raise ApplyError(409, "blob_missing", f"the {role} blob {sha} is not stored on any controller; "
                                                  f"upload it first (PUT /v1/images/blobs/{sha})")
        image[role] = {"sha256": sha, "size": blob["size"]}
    data.images[name] = image
    return image


@handles("image.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Refused while an instance uses the image; blobs no other image uses are forgotten with it."""
    name = args["name"]
    image = data.images.get(name)
    if image is None:
        raise not_found("image", name)
    users = users_of(data, name)
    if users:
        shown = ", ".join(sorted(i["name"] for i in users)[:5])
        raise conflict(f"image {name!r} is used by {len(users)} instance(s) ({shown}); delete them first")
    del data.images[name]
    still_used = referenced_blobs(data)
    for sha in blob_refs(image).values():
        if sha not in still_used:
            data.image_blobs.pop(sha, None)
    return {"deleted": name}
