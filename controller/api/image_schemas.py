"""Request and response bodies for VM images and their blobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from controller.api.schemas import Name, Request, Response

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s]+$")]


class ImageCreate(Request):
    """Either ``disk_sha256`` (a blob uploaded before with PUT /v1/images/blobs/{sha256}) or ``url``."""

    name: Name
    format: Literal["qcow2", "raw"] = "qcow2"
    disk_sha256: Sha256 | None = None
    kernel_sha256: Sha256 | None = None
    initrd_sha256: Sha256 | None = None
    cmdline: Annotated[str, Field(max_length=4096)] = ""
    url: Url | None = None
    sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ImageCreate:
        if (self.disk_sha256 is None) == (self.url is None):
            raise ValueError("give either disk_sha256 (an uploaded blob) or url")
        if self.sha256 is not None and self.url is None:
            raise ValueError("sha256 goes with url (the expected hash of the download)")
        if (self.initrd_sha256 or self.cmdline) and not self.kernel_sha256:
            raise ValueError("an initrd or a kernel command line needs kernel_sha256")
        return self


class ImageBlob(Response):
    sha256: str
    size: int
    holders: list[str]


class Image(Response):
    name: str
    format: str
    disk: dict[str, Any]
    kernel: dict[str, Any] | None
    initrd: dict[str, Any] | None
    cmdline: str
    size: int
    holders: list[str]
    instances: int
    created_at: str


class ImagePage(Response):
    items: list[Image]
    next_marker: str | None
