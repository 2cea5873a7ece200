"""Users and API keys."""

from __future__ import annotations

from aiohttp import web

from controller.api import schemas
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import keys, users


async def create_user(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.UserCreate)
    user, replayed = await users.create(req.rt, req.rc, body.name, body.role, body.password, body.tenant)
    return json_response(user, 201, replayed)


async def list_users(req: ApiRequest) -> web.StreamResponse:
    return json_response(await users.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant"),
                                           req.flag("all_tenants")))


async def get_user(req: ApiRequest) -> web.StreamResponse:
    return json_response(await users.get(req.rt, req.rc, req.path("user")))


async def update_user(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.UserUpdate)
    return json_response(await users.update(req.rt, req.rc, req.path("user"), body.model_dump(exclude_unset=True)))


async def delete_user(req: ApiRequest) -> web.StreamResponse:
    await users.delete(req.rt, req.rc, req.path("user"))
    return no_content()


async def create_key(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.KeyCreate)
    key, replayed = await keys.create(req.rt, req.rc, body.name, body.user, body.expires_in_seconds)
    return json_response(key, 201, replayed)


async def list_keys(req: ApiRequest) -> web.StreamResponse:
    return json_response(await keys.list_(req.rt, req.rc, req.limit(), req.query("marker")))


async def get_key(req: ApiRequest) -> web.StreamResponse:
    return json_response(await keys.get(req.rt, req.rc, req.path("key_id")))


async def revoke_key(req: ApiRequest) -> web.StreamResponse:
    await keys.revoke(req.rt, req.rc, req.path("key_id"))
    return no_content()
