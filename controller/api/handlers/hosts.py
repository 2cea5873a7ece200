"""Hosts: join tokens, joining, listing and maintenance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from controller.api import compute_schemas as cs
from controller.api.errors import ApiError
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import hosts

HOST_STATES = ("new", "up", "down", "fencing")


async def create_token(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.HostTokenCreate)
    return json_response(await hosts.create_token(req.rt, req.rc, body.expires_in_seconds, body.zone), 201)


async def join(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.HostJoin)
    return json_response(await hosts.join(req.rt, req.rc, body.token, body.name, body.zone, body.csr), 201)


async def list_hosts(req: ApiRequest) -> web.StreamResponse:
    state = req.query("state")
    if state is not None and state not in HOST_STATES:
        raise ApiError(400, "bad_request", f"state must be one of {', '.join(HOST_STATES)}")
    return json_response(await hosts.list_(req.rt, req.rc, req.limit(), req.query("marker"), state))


async def get_host(req: ApiRequest) -> web.StreamResponse:
    return json_response(await hosts.get(req.rt, req.rc, req.path("host")))


def _flag(verb: str) -> Callable[[ApiRequest], Awaitable[web.StreamResponse]]:
    async def handler(req: ApiRequest) -> web.StreamResponse:
        return json_response(await hosts.set_flag(req.rt, req.rc, req.path("host"), verb))

    handler.__name__ = f"{verb}_host"
    return handler


drain_host = _flag("drain")
undrain_host = _flag("undrain")
disable_host = _flag("disable")
enable_host = _flag("enable")


async def delete_host(req: ApiRequest) -> web.StreamResponse:
    await hosts.delete(req.rt, req.rc, req.path("host"))
    return no_content()
