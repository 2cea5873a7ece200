"""The S3 HTTP front: one catch-all aiohttp handler that authenticates, routes and renders S3 errors as XML.

Unauthenticated GET /metrics and GET /v1/health are the daemon's own endpoints; a signed request to the same
paths is an ordinary S3 request (a bucket named "metrics" or "v1").
"""

from __future__ import annotations

import logging
import secrets
import time
from urllib.parse import unquote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from shared.logs import request_id_var
from storaged.s3 import sigv4
from storaged.s3.catalog import CatalogError
from storaged.s3.context import S3Request, Services
from storaged.s3.errors import S3Error
from storaged.s3.routing import route
from storaged.s3.xml import error_document

log = logging.getLogger(__name__)

REQUESTS = Counter("thecloud_s3_requests_total", "S3 requests by operation and status", ["op", "status"])
LATENCY = Histogram("thecloud_s3_request_seconds", "S3 request latency (until the handler returns)", ["op"])
BYTES_IN = Counter("thecloud_s3_received_bytes_total", "object bytes received")
BYTES_OUT = Counter("thecloud_s3_sent_bytes_total", "object bytes sent")

SERVICES_KEY = web.AppKey("s3_services", Services)
SERVER_NAME = "thecloud-storaged"


def _error_response(err: S3Error, resource: str, request_id: str, head: bool) -> web.Response:
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id, **err.headers}
    if err.status == 416 and "ActualObjectSize" in err.extra:
        headers["Content-Range"] = f"bytes */{err.extra['ActualObjectSize']}"
    body = None if head else error_document(err, resource, request_id)
    return web.Response(status=err.status, body=body, content_type="application/xml", headers=headers)


async def _own_endpoint(request: web.Request, path: str) -> web.StreamResponse | None:
    if request.method != "GET" or sigv4.is_signed(request.headers, request.query):
        return None
    if path == "/metrics":
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    if path == "/v1/health":
        return web.json_response({"status": "ok", "service": "s3"})
    return None


async def handle(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES_KEY]
    request_id = secrets.token_hex(8).upper()
    request_id_var.set(request_id)
    raw_path, _, raw_query = request.raw_path.partition("?")
    path = unquote(raw_path)
    own = await _own_endpoint(request, path)
    if own is not None:
        return own
    bucket, _, key = path.lstrip("/").partition("/")
    op, started, status = "Unknown", time.monotonic(), 500
    ctx: S3Request | None = None
    try:
        if not path.startswith("/"):
            raise S3Error("InvalidURI", "Couldn't parse the specified URI.", 400)
        auth = await sigv4.authenticate(request.method, raw_path, raw_query, request.headers, request.query,
                                        services.credentials)
        op, handler = route(request.method, bucket, key, request.query, request)
        ctx = S3Request(request, auth, services, bucket, key, request.query, op)
        response = await handler(ctx)
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id
        response.headers["Server"] = SERVER_NAME
        status = response.status
        return response
    except S3Error as err:
        status = err.status
        return _error_response(err, path, request_id, request.method == "HEAD")
    except CatalogError as err:
        status = err.status
        return _error_response(S3Error(err.code, err.message, err.status), path, request_id,
                               request.method == "HEAD")
    except (ConnectionResetError, web.HTTPException):
        status = 499
        raise
    except Exception:
        log.exception("s3 request failed", extra={"op": op, "bucket": bucket})
        return _error_response(S3Error("InternalError", "We encountered an internal error. Please try again.", 500),
                               path, request_id, request.method == "HEAD")
    finally:
        elapsed = time.monotonic() - started
        REQUESTS.labels(op, str(status)).inc()
        LATENCY.labels(op).observe(elapsed)
        if ctx is not None:
            BYTES_IN.inc(ctx.extra.get("bytes_in", 0))
            BYTES_OUT.inc(ctx.extra.get("bytes_out", 0))
        log.debug("s3 request", extra={"op": op, "method": request.method, "bucket": bucket, "status": status,
                                       "tenant": ctx.tenant_id if ctx else "", "ms": round(elapsed * 1000, 1)})


def make_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=4 << 20)
    app[SERVICES_KEY] = services
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
