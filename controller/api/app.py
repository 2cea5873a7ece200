"""The aiohttp application: routes from the table, each behind its policy rule."""

from __future__ import annotations

from aiohttp import web

from controller.api import openapi
from controller.api.appkeys import BUS, METRICS, OPENAPI, RUNTIME
from controller.api.dispatch import make_handler
from controller.api.events import EventBus
from controller.api.metrics import Metrics
from controller.api.middleware import errors_and_metrics
from controller.api.policy import POLICY
from controller.api.routes import ROUTES
from controller.services.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024


class MissingPolicy(RuntimeError):
    pass


def build_app(rt: Runtime, bus: EventBus | None = None) -> web.Application:
    missing = [f"{r.method} {r.path}" for r in ROUTES if r.key not in POLICY]
    if missing:
        raise MissingPolicy("routes without a policy entry: " + ", ".join(missing))
    unaudited = [f"{r.method} {r.path}" for r in ROUTES if r.mutating and not r.audit]
    if unaudited:
        raise MissingPolicy("mutating routes without an audit action: " + ", ".join(unaudited))
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = rt
    app[BUS] = bus or EventBus()
    app[METRICS] = Metrics(rt)
    app[OPENAPI] = openapi.build()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, make_handler(route, POLICY[route.key]))
    return app
