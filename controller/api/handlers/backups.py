"""Snapshot exports to S3 (backups); a restore is ``POST /v1/volumes`` with ``from_backup``."""

from __future__ import annotations

from aiohttp import web

from controller.api import storage_schemas as ss
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import backups


async def export_snapshot(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.BackupExport)
    backup, replayed = await backups.export(req.rt, req.rc, req.path("snapshot"), body.bucket, body.key,
                                            req.query("tenant"))
    return json_response(backup, 201, replayed)


async def list_backups(req: ApiRequest) -> web.StreamResponse:
    return json_response(await backups.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant")))


async def get_backup(req: ApiRequest) -> web.StreamResponse:
    return json_response(await backups.get(req.rt, req.rc, req.path("backup"), req.query("tenant")))


async def delete_backup(req: ApiRequest) -> web.StreamResponse:
    await backups.delete(req.rt, req.rc, req.path("backup"), req.query("tenant"))
    return no_content()
