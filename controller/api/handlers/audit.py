"""The audit trail and the live event stream (server-sent events)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from controller.api.appkeys import BUS
from controller.api.errors import ApiError
from controller.api.request import ApiRequest, json_response
from controller.services import audit, views

KEEPALIVE_SECONDS = 15.0


async def list_audit(req: ApiRequest) -> web.StreamResponse:
    outcome = req.query("outcome")
    if outcome is not None and outcome not in ("success", "denied", "failed"):
        raise ApiError(400, "bad_request", "outcome must be success, denied or failed")
    filters: dict[str, Any] = {name: req.query(name) for name in ("actor", "action", "target")}
    filters.update(outcome=outcome, since=req.timestamp("since"), until=req.timestamp("until"),
                   tenant_id=audit.resolve_tenant(req.rt, req.rc, req.query("tenant")))
    return json_response(await audit.list_(req.rt, req.rc, req.limit(), req.query("marker"), filters))


async def stream_events(req: ApiRequest) -> web.StreamResponse:
    """Sends every audit record the caller may see, from ``Last-Event-ID``/``after`` on, then live."""
    last = req.http.headers.get("Last-Event-ID") or req.query("after") or ""
    if last and not last.isdigit():
        raise ApiError(400, "bad_request", "Last-Event-ID / after must be an event id")
    bus = req.http.app[BUS]
    filters = {"tenant_id": audit.resolve_tenant(req.rt, req.rc, req.query("tenant"))}
    keep = audit.record_filter(req.rc, filters)
    queue = bus.subscribe()
    try:
        await req.rt.consistent(req.rc)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Request-Id": req.rc.request_id})
        await response.prepare(req.http)
        sent = int(last) if last else 0
        if last:
            for record in audit.records_after(req.rt, req.rc, sent, filters):
                await _send(response, record)
                sent = int(record["id"])
        while True:
            try:
                raw = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if raw is None:
                break
            if raw["id"] <= sent or not keep(raw):
                continue
            await _send(response, views.audit_record(raw))
            sent = raw["id"]
        return response
    finally:
        bus.unsubscribe(queue)


async def _send(response: web.StreamResponse, record: dict[str, Any]) -> None:
    await response.write(f"id: {record['id']}\nevent: audit\ndata: {json.dumps(record)}\n\n".encode())
