"""Metrics and the OpenAPI document."""

from __future__ import annotations

import json

from aiohttp import web

from controller.api.appkeys import METRICS, OPENAPI
from controller.api.request import ApiRequest


async def metrics(req: ApiRequest) -> web.StreamResponse:
    body = req.http.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(req: ApiRequest) -> web.StreamResponse:
    return web.Response(body=json.dumps(req.http.app[OPENAPI]), content_type="application/json")
