"""Cluster health, membership and backup."""

from __future__ import annotations

from aiohttp import web

from controller.api import schemas
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import cluster


async def health(req: ApiRequest) -> web.StreamResponse:
    return json_response(cluster.health(req.rt))


async def list_members(req: ApiRequest) -> web.StreamResponse:
    return json_response(await cluster.list_members(req.rt, req.rc))


async def add_member(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.MemberAdd)
    return json_response(await cluster.add_member(req.rt, req.rc, body.raft_address, body.api_address), 201)


async def remove_member(req: ApiRequest) -> web.StreamResponse:
    await cluster.remove_member(req.rt, req.rc, req.path("raft_address"))
    return no_content()


async def transfer_leader(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.LeaderTransfer) if req.raw_body.strip() else schemas.LeaderTransfer()
    return json_response(await cluster.transfer_leader(req.rt, req.rc, body.to))


async def backup(req: ApiRequest) -> web.StreamResponse:
    blob = await cluster.backup(req.rt, req.rc)
    return web.Response(body=blob, content_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="thecloud-backup.bin"'})
