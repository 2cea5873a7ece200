"""Volumes and snapshots."""

from __future__ import annotations

from aiohttp import web

from controller.api import storage_schemas as ss
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import snapshots, volumes


async def create_volume(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.VolumeCreate)
    volume, replayed = await volumes.create(req.rt, req.rc, body.model_dump(), req.query("tenant"))
    return json_response(volume, 201, replayed)


async def list_volumes(req: ApiRequest) -> web.StreamResponse:
    return json_response(await volumes.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant")))


async def get_volume(req: ApiRequest) -> web.StreamResponse:
    return json_response(await volumes.get(req.rt, req.rc, req.path("volume"), req.query("tenant")))


async def delete_volume(req: ApiRequest) -> web.StreamResponse:
    await volumes.delete(req.rt, req.rc, req.path("volume"), req.query("tenant"))
    return no_content()


async def resize_volume(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.VolumeResize)
    return json_response(await volumes.resize(req.rt, req.rc, req.path("volume"), body.size_gb, req.query("tenant")))


async def attach_volume(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.VolumeAttach)
    return json_response(await volumes.attach(req.rt, req.rc, req.path("volume"), body.instance, body.mount_path,
                                              req.query("tenant")))


async def detach_volume(req: ApiRequest) -> web.StreamResponse:
    return json_response(await volumes.detach(req.rt, req.rc, req.path("volume"), req.query("tenant")))


async def create_snapshot(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.SnapshotCreate)
    snap, replayed = await snapshots.create(req.rt, req.rc, body.name, body.volume, req.query("tenant"))
    return json_response(snap, 201, replayed)


async def list_snapshots(req: ApiRequest) -> web.StreamResponse:
    return json_response(await snapshots.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant"),
                                               req.query("volume")))


async def get_snapshot(req: ApiRequest) -> web.StreamResponse:
    return json_response(await snapshots.get(req.rt, req.rc, req.path("snapshot"), req.query("tenant")))


async def delete_snapshot(req: ApiRequest) -> web.StreamResponse:
    await snapshots.delete(req.rt, req.rc, req.path("snapshot"), req.query("tenant"))
    return no_content()


async def restore_snapshot(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ss.SnapshotRestore)
    volume, replayed = await snapshots.restore(req.rt, req.rc, req.path("snapshot"), body.name, body.size_gb,
                                               req.query("tenant"))
    return json_response(volume, 201, replayed)
