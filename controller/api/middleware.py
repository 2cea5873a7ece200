"""The outermost layer: request ids, the error format for every failure, metrics and access logs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from controller.api.appkeys import METRICS
from controller.api.dispatch import REQUEST_ID
from controller.api.errors import ApiError, error_response
from controller.services.errors import ServiceError
from controller.store.base import StoreUnavailable
from shared.logs import request_id_var

log = logging.getLogger("thecloud.api")
CLIENT_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    client_id = request.headers.get("X-Request-Id", "")
    request_id = client_id if CLIENT_REQUEST_ID_RE.match(client_id) else "req-" + uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    try:
        response = await _guarded(request, handler, request_id)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        elapsed = time.perf_counter() - started
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        request.app[METRICS].observe(request.method, route, response.status, elapsed)
        if response.status >= 500 or log.isEnabledFor(logging.DEBUG):
            log.info("request", extra={"method": request.method, "route": route, "status": response.status,
                                       "ms": round(elapsed * 1000, 2)})
        return response
    finally:
        request_id_var.reset(token)


async def _guarded(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message, request_id, err.headers)
    except ServiceError as err:
        return error_response(err.status, err.code, err.message, request_id)
    except StoreUnavailable as err:
        retry = str(max(1, round(err.retry_after)))
        return error_response(503, "unavailable", err.message, request_id, {"Retry-After": retry})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = exc.reason if exc.status != 404 else f"no route {request.method} {request.path}"
        if exc.status == 413:
            message = "request body too large"
        return error_response(exc.status, HTTP_CODES.get(exc.status, "error"), message, request_id, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error; the controller log has details under this "
                              "request id", request_id)
