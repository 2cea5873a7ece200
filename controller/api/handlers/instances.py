"""Instances, server groups and instance types."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from controller.api import compute_schemas as cs
from controller.api.errors import ApiError
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import instances

LOGS_FIRST_CHUNK_WAIT = 2.0  # seconds
STATUSES = ("pending", "scheduled", "creating", "running", "stopped", "error", "deleting")


async def create_instance(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.InstanceCreate)
    instance, replayed = await instances.create(req.rt, req.rc, body.model_dump(), req.query("tenant"))
    return json_response(instance, 201, replayed)


async def create_instances(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.InstanceBatchCreate)
    page, replayed = await instances.create_batch(req.rt, req.rc, body.template.model_dump(), body.name_prefix,
                                                  body.count, req.query("tenant"))
    return json_response(page, 201, replayed)


async def list_instances(req: ApiRequest) -> web.StreamResponse:
    status = req.query("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
    return json_response(await instances.list_(req.rt, req.rc, req.limit(), req.query("marker"), req.query("tenant"),
                                               status, req.query("tag")))


async def get_instance(req: ApiRequest) -> web.StreamResponse:
    return json_response(await instances.get(req.rt, req.rc, req.path("instance"), req.query("tenant")))


def _action(verb: str) -> Callable[[ApiRequest], Awaitable[web.StreamResponse]]:
    async def handler(req: ApiRequest) -> web.StreamResponse:
        return json_response(await instances.act(req.rt, req.rc, req.path("instance"), verb, req.query("tenant")))

    handler.__name__ = f"{verb}_instance"
    return handler


stop_instance = _action("stop")
start_instance = _action("start")
reboot_instance = _action("reboot")


async def resize_instance(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.InstanceResize)
    return json_response(await instances.resize(req.rt, req.rc, req.path("instance"), body.model_dump(),
                                                req.query("tenant")))


async def update_instance(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.InstanceUpdate)
    changes = body.model_dump(exclude_none=True)
    return json_response(await instances.update(req.rt, req.rc, req.path("instance"), changes, req.query("tenant")))


async def delete_instance(req: ApiRequest) -> web.StreamResponse:
    await instances.delete(req.rt, req.rc, req.path("instance"), req.query("tenant"))
    return no_content()


async def instance_stats(req: ApiRequest) -> web.StreamResponse:
    return json_response(await instances.agent_call(req.rt, req.rc, req.path("instance"), req.query("tenant"),
                                                    "stats"))


async def instance_console(req: ApiRequest) -> web.StreamResponse:
    return json_response(await instances.agent_call(req.rt, req.rc, req.path("instance"), req.query("tenant"),
                                                    "console"))


async def exec_instance(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.ExecRequest)
    return json_response(await instances.agent_call(req.rt, req.rc, req.path("instance"), req.query("tenant"),
                                                    "exec", {"command": body.command, "timeout": body.timeout}))


async def instance_logs(req: ApiRequest) -> web.StreamResponse:
    tail_raw = req.query("tail")
    if tail_raw is not None and (not tail_raw.isdigit() or int(tail_raw) > 100_000):
        raise ApiError(400, "bad_request", "tail must be an integer between 0 and 100000")
    chunks = aiter(await instances.logs(req.rt, req.rc, req.path("instance"), req.query("tenant"),
                                        int(tail_raw) if tail_raw is not None else None, req.flag("follow")))
    # The agent is reached when the first chunk is asked for: wait a moment for it before sending the headers,
    # so that an unreachable agent is a proper error response, not a 200 cut off (following an idle instance,
    # the headers go out after that moment and the first chunk comes when there is one).
    first: asyncio.Task[bytes] = asyncio.ensure_future(anext(chunks, b""))
    await asyncio.wait([first], timeout=LOGS_FIRST_CHUNK_WAIT)
    if first.done():
        first.result()  # raises the agent's error while no header was sent
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "X-Request-Id": req.rc.request_id})
    try:
        await response.prepare(req.http)
        await response.write(await first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    finally:
        first.cancel()
    return response


async def create_group(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.ServerGroupCreate)
    return json_response(await instances.create_group(req.rt, req.rc, body.name, body.policy, req.query("tenant")),
                         201)


async def list_groups(req: ApiRequest) -> web.StreamResponse:
    return json_response(await instances.list_groups(req.rt, req.rc, req.query("tenant")))


async def delete_group(req: ApiRequest) -> web.StreamResponse:
    await instances.delete_group(req.rt, req.rc, req.path("group"), req.query("tenant"))
    return no_content()


async def list_types(req: ApiRequest) -> web.StreamResponse:
    return json_response(await instances.list_types(req.rt, req.rc))


async def create_type(req: ApiRequest) -> web.StreamResponse:
    body = req.body(cs.InstanceTypeCreate)
    return json_response(await instances.create_type(req.rt, req.rc, body.model_dump()), 201)


async def delete_type(req: ApiRequest) -> web.StreamResponse:
    await instances.delete_type(req.rt, req.rc, req.path("name"))
    return no_content()
