"""The VM images resource group: cluster-wide images, their blobs (uploaded once, by sha256) and imports."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from shared.sdk.base import ListableResource, body, query, seg

CHUNK = 1 << 20
UPLOAD_READ_TIMEOUT = 600.0  # the controller verifies, fsyncs and records the blob before it answers
URL_IMPORT_TIMEOUT = 3600.0  # the controller downloads the whole image before it answers

# progress(done_bytes, total_bytes, what): what is "hash disk", "upload kernel", ...
Progress = Callable[[int, int, str], None]


def sha256_of(path: str, progress: Progress | None = None, what: str = "") -> tuple[str, int]:
    """The sha256 (hex) and size of a local file, read in pieces."""
    total = os.path.getsize(path)
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total, what)
    return digest.hexdigest(), done


class ImagesAPI(ListableResource):
    """VM images (visible to every tenant; the cluster admin registers and deletes them)."""

    path = "/v1/images"

    def get(self, name: str, *, stale: bool = False) -> dict[str, Any]:
        """An image: format, blobs (sha256 and size), which controllers hold all of it, how many VMs use it."""
        result: dict[str, Any] = self._client.request("GET", f"{self.path}/{seg(name)}", params=query(stale=stale))
        return result

    def delete(self, name: str) -> None:
        """Delete an image (409 while an instance uses it)."""
        self._client.request("DELETE", f"{self.path}/{seg(name)}")

    def upload_blob(self, path: str, sha256: str | None = None, progress: Progress | None = None,
                    what: str = "blob") -> dict[str, Any]:
        """Upload a local file as a blob, streamed; returns ``{"sha256", "size", "holders"}``.

        The sha256 is computed first unless given; the controller keeps the blob only if it matches.
        """
        if sha256 is None:
            sha256, _ = sha256_of(path, progress, f"hash {what}")
        size = os.path.getsize(path)

        def chunks() -> Iterator[bytes]:
            done = 0
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    done += len(block)
                    if progress is not None:
                        progress(done, size, f"upload {what}")
                    yield block

        result: dict[str, Any] = self._client.request(
            "PUT",
            f"{self.path}/blobs/{seg(sha256)}",
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=httpx.Timeout(self._client.timeout, read=UPLOAD_READ_TIMEOUT),
        )
        return result

    def register(
        self,
        name: str,
        disk_sha256: str,
        *,
        format: str = "qcow2",
        kernel_sha256: str | None = None,
        initrd_sha256: str | None = None,
        cmdline: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Register an image from blobs uploaded before."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            json=body(name=name, format=format, disk_sha256=disk_sha256, kernel_sha256=kernel_sha256,
                      initrd_sha256=initrd_sha256, cmdline=cmdline),
            idempotency_key=idempotency_key,
        )
        return result

    def import_file(
        self,
        name: str,
        disk: str,
        *,
        format: str = "qcow2",
        kernel: str | None = None,
        initrd: str | None = None,
        cmdline: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a disk (and a kernel and initrd for direct kernel boot) and register them as image ``name``."""
        hashes: dict[str, str] = {}
        for what, path in (("disk", disk), ("kernel", kernel), ("initrd", initrd)):
            if path:
                hashes[what] = self.upload_blob(path, progress=progress, what=what)["sha256"]
        return self.register(name, hashes["disk"], format=format, kernel_sha256=hashes.get("kernel"),
                             initrd_sha256=hashes.get("initrd"), cmdline=cmdline)

    def import_url(
        self,
        name: str,
        url: str,
        *,
        sha256: str | None = None,
        format: str = "qcow2",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Have the controller download ``url`` (verified against ``sha256`` when given) and register it."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            json=body(name=name, url=url, sha256=sha256, format=format),
            idempotency_key=idempotency_key,
            timeout=httpx.Timeout(self._client.timeout, read=URL_IMPORT_TIMEOUT),
        )
        return result
