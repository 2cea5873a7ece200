"""VM images: blob uploads (streamed into this controller's store), downloads from a URL, registration,
listing and deletion. Images are cluster-wide: every tenant sees them, the cluster admin manages them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import ServiceError, not_found
from controller.services.runtime import Runtime
from controller.state import idempotency
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.state.images import blob_refs, users_of
from shared.blobs import BlobDir, DigestMismatch, TooLarge, valid_sha256

log = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 20 * 1024**3  # per blob
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_READ_TIMEOUT = 60.0


def store(rt: Runtime) -> BlobDir:
    if rt.images is None:
        raise ServiceError(503, "unavailable", "this controller has no image store")
    return rt.images


def check_sha256(value: str, what: str = "sha256") -> str:
    value = value.lower()
    if not valid_sha256(value):
        raise ServiceError(400, "bad_request", f"{what} must be 64 hex digits (a sha256)")
    return value


def _too_large(limit: int) -> ServiceError:
    return ServiceError(413, "payload_too_large", f"an image blob may have at most {limit} bytes")


async def _store_blob(rt: Runtime, chunks: AsyncIterator[bytes], expected: str | None) -> tuple[str, int]:
    limit = MAX_IMAGE_BYTES
    try:
        return await store(rt).write(chunks, expected=expected, max_bytes=limit)
    except DigestMismatch as err:
        raise ServiceError(422, "digest_mismatch", f"{err}; nothing was stored") from None
    except TooLarge:
        raise _too_large(limit) from None


async def _hold(rt: Runtime, rc: RequestContext, sha: str, size: int, action: str) -> dict[str, Any]:
    out = await rt.propose(rc, "image.blob.add", {"sha256": sha, "size": size,
                                                  "holder": rt.store.status().self_address},
                           action=action, target=sha, tenant_id=None)
    return blob_view(out.result)


def blob_view(blob: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": blob["sha256"], "size": blob["size"], "holders": sorted(blob["holders"]),
            "created_at": views.iso(blob["created_at"])}


async def upload(rt: Runtime, rc: RequestContext, sha256: str, chunks: AsyncIterator[bytes],
                 content_length: int | None) -> dict[str, Any]:
    """Stores the body as blob ``sha256`` if that is its hash (else 422, nothing kept) and records the copy."""
    sha = check_sha256(sha256)
    if content_length is not None and content_length > MAX_IMAGE_BYTES:
        raise _too_large(MAX_IMAGE_BYTES)
    try:
        actual, size = await _store_blob(rt, chunks, sha)
    except (ConnectionError, aiohttp.ClientPayloadError) as exc:  # the client went away mid-upload
        raise ServiceError(400, "bad_request", f"the body was cut off ({exc}); nothing was stored") from None
    log.info("stored image blob %s (%d bytes) from an upload", actual, size)
    return await _hold(rt, rc, actual, size, "image.blob.upload")


async def _download(rt: Runtime, url: str, expected: str | None) -> tuple[str, int]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=DOWNLOAD_READ_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise ServiceError(422, "download_failed", f"GET {url} answered {response.status} {response.reason}")
            if response.content_length is not None and response.content_length > MAX_IMAGE_BYTES:
                raise _too_large(MAX_IMAGE_BYTES)
            return await _store_blob(rt, response.content.iter_chunked(DOWNLOAD_CHUNK), expected)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ServiceError(422, "download_failed", f"cannot download {url}: {exc or type(exc).__name__}") from None


def _check_name_free(rt: Runtime, name: str) -> None:
    with rt.view() as data:
        if name in data.images:
            raise ServiceError(409, "conflict", f"image {name!r} already exists")


def _stored_outcome(rt: Runtime, rc: RequestContext) -> dict[str, Any] | None:
    """The first outcome of this keyed request, if it was seen before (a repeat must not download again)."""
    if not rc.idempotency_key:
        return None
    with rt.view() as data:
        try:
            return idempotency.lookup(data, rc.command_ctx(rt.clock(), "", "", None))
        except ApplyError as err:
            raise ServiceError(err.status, err.code, err.message) from None


async def register(rt: Runtime, rc: RequestContext, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """From blobs uploaded before (``disk_sha256``...), or from ``url``, downloaded by this controller."""
    await rt.consistent(rc)
    stored = _stored_outcome(rt, rc)
    if stored is not None:
        if not stored["ok"]:
            err = stored["error"]
            raise ServiceError(int(err["status"]), str(err["code"]), str(err["message"]), audited=True)
        with rt.view() as data:
            return image_view(data, stored["result"]), True
    name = body["name"]
    args: dict[str, Any] = {"name": name, "format": body["format"], "cmdline": body.get("cmdline") or ""}
    for role in ("disk", "kernel", "initrd"):
        if body.get(f"{role}_sha256"):
            args[f"{role}_sha256"] = check_sha256(body[f"{role}_sha256"], f"{role}_sha256")
    url = body.get("url")
    if url:
        _check_name_free(rt, name)  # before a long download
        expected = check_sha256(body["sha256"]) if body.get("sha256") else None
        sha, size = await _download(rt, url, expected)
        log.info("stored image blob %s (%d bytes) downloaded from %s", sha, size, url)
        # its own command (unaudited, no idempotency key: that belongs to image.create below)
        await _hold(rt, dataclasses.replace(rc, idempotency_key=None, fingerprint=None), sha, size, "")
        args.update(disk_sha256=sha, source=url)
    out = await rt.propose(rc, "image.create", args, action="image.create", target=name, tenant_id=None)
    with rt.view() as data:
        return image_view(data, out.result), out.replayed


def image_view(data: StateData, image: dict[str, Any], users: int | None = None) -> dict[str, Any]:
    holders: set[str] | None = None
    for sha in blob_refs(image).values():
        held = set(data.image_blobs.get(sha, {}).get("holders", []))
        holders = held if holders is None else holders & held
    return {"name": image["name"], "format": image["format"], "disk": image["disk"], "kernel": image.get("kernel"),
            "initrd": image.get("initrd"), "cmdline": image.get("cmdline", ""), "source": image.get("source", ""),
            "size": sum(image[r]["size"] for r in ("disk", "kernel", "initrd") if image.get(r)),
            "holders": sorted(holders or ()),
            "instances": len(users_of(data, image["name"])) if users is None else users,
            "created_at": views.iso(image["created_at"]), "created_by": image.get("created_by", "")}


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        users: dict[str, int] = {}
        for i in data.instances.values():
            if i.get("kind") == "vm":
                users[i["image"]] = users.get(i["image"], 0) + 1
        items, nxt = views.page(data.images, limit, marker)
        return {"items": [image_view(data, i, users.get(i["name"], 0)) for i in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, name: str) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        image = data.images.get(name)
        if image is None:
            raise not_found("image", name)
        return image_view(data, image)


async def delete(rt: Runtime, rc: RequestContext, name: str) -> None:
    await rt.propose(rc, "image.delete", {"name": name}, action="image.delete", target=name, tenant_id=None)
