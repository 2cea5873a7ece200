"""Typed keys for objects stored on the aiohttp application."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controller.api.events import EventBus
from controller.services.runtime import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
BUS: web.AppKey[EventBus] = web.AppKey("bus", EventBus)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
METRICS: web.AppKey[Any] = web.AppKey("metrics", object)
