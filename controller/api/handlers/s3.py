"""S3 access keys and the tenant's buckets."""

from __future__ import annotations

from aiohttp import web

from controller.api.request import ApiRequest, json_response, no_content
from controller.services import s3


async def create_credential(req: ApiRequest) -> web.StreamResponse:
    credential, replayed = await s3.create_credential(req.rt, req.rc)
    return json_response(credential, 201, replayed)


async def list_credentials(req: ApiRequest) -> web.StreamResponse:
    return json_response(await s3.list_credentials(req.rt, req.rc, req.limit(), req.query("marker")))


async def delete_credential(req: ApiRequest) -> web.StreamResponse:
    await s3.delete_credential(req.rt, req.rc, req.path("access_key_id"))
    return no_content()


async def list_buckets(req: ApiRequest) -> web.StreamResponse:
    return json_response(await s3.list_buckets(req.rt, req.rc, req.limit(), req.query("marker"),
                                               req.query("tenant")))
