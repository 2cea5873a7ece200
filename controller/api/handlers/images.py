"""VM images (cluster-wide) and their blobs."""

from __future__ import annotations

from aiohttp import web

from controller.api import image_schemas as ims
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import images

UPLOAD_CHUNK = 1 << 20


async def upload_blob(req: ApiRequest) -> web.StreamResponse:
    """The body is read here, in pieces, straight into the blob store (never whole into memory)."""
    blob = await images.upload(req.rt, req.rc, req.path("sha256"), req.http.content.iter_chunked(UPLOAD_CHUNK),
                               req.http.content_length)
    return json_response(blob)


async def create_image(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ims.ImageCreate)
    image, replayed = await images.register(req.rt, req.rc, body.model_dump())
    return json_response(image, 201, replayed)


async def list_images(req: ApiRequest) -> web.StreamResponse:
    return json_response(await images.list_(req.rt, req.rc, req.limit(), req.query("marker")))


async def get_image(req: ApiRequest) -> web.StreamResponse:
    return json_response(await images.get(req.rt, req.rc, req.path("name")))


async def delete_image(req: ApiRequest) -> web.StreamResponse:
    await images.delete(req.rt, req.rc, req.path("name"))
    return no_content()
