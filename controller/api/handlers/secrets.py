"""Secrets."""

from __future__ import annotations

from aiohttp import web

from controller.api import schemas
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import secrets


async def create_secret(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.SecretCreate)
    secret, replayed = await secrets.create(req.rt, req.rc, body.name, body.value, req.query("tenant"))
    return json_response(secret, 201, replayed)


async def list_secrets(req: ApiRequest) -> web.StreamResponse:
    return json_response(await secrets.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant")))


async def get_secret(req: ApiRequest) -> web.StreamResponse:
    return json_response(await secrets.get(req.rt, req.rc, req.path("name"), req.query("tenant")))


async def get_secret_value(req: ApiRequest) -> web.StreamResponse:
    return json_response(await secrets.get_value(req.rt, req.rc, req.path("name"), req.query("tenant")))


async def rotate_secret(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.SecretRotate)
    return json_response(await secrets.rotate(req.rt, req.rc, req.path("name"), body.value, req.query("tenant")))


async def delete_secret(req: ApiRequest) -> web.StreamResponse:
    await secrets.delete(req.rt, req.rc, req.path("name"), req.query("tenant"))
    return no_content()
