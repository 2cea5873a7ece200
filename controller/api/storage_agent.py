"""The storaged endpoints of the agents' listener (mutual TLS, msgpack; the host id comes from the certificate).

Errors of the S3 catalog endpoints carry S3-style codes (``NoSuchBucket``, ``BucketAlreadyExists``,
``BucketAlreadyOwnedByYou``, ``InvalidBucketName``, ``quota_exceeded``) in ``error.code``, which storaged reads
from ``LinkError.code``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controller.api.appkeys import RUNTIME
from controller.services import storage_link
from controller.services.errors import ServiceError

Helpers = tuple[Any, Any, Any]  # (_host_id, _body, _packed) of controller.api.agent_app


def add_routes(app: web.Application, helpers: Helpers) -> None:
    host_id_of, body_of, packed = helpers

    async def storage_report(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        body = await body_of(request)
        capacity = body.get("capacity")
        if (not isinstance(body.get("backend"), str) or not isinstance(capacity, dict)
                or not all(isinstance(capacity.get(k), int) for k in ("total_gb", "free_gb"))):
            raise ServiceError(400, "bad_request", "backend must be a string and capacity {total_gb, free_gb} ints")
        for key in ("volumes", "snapshots", "backups"):
            items = body.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ServiceError(400, "bad_request", f"{key} must be a list of maps")
        return packed(await storage_link.report(request.app[RUNTIME], host_id, body))

    async def s3_credential(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        return packed(await storage_link.lookup_credential(request.app[RUNTIME], host_id,
                                                           request.match_info["access_key_id"]))

    async def create_bucket(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        body = await body_of(request)
        return packed(await storage_link.create_bucket(request.app[RUNTIME], host_id, body))

    async def list_buckets(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        tenant_id = request.query.get("tenant_id")
        if not tenant_id:
            raise ServiceError(400, "bad_request", "tenant_id is required")
        return packed(storage_link.list_buckets(request.app[RUNTIME], host_id, tenant_id))

    async def get_bucket(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        return packed(storage_link.get_bucket(request.app[RUNTIME], host_id, request.match_info["name"]))

    async def delete_bucket(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        return packed(await storage_link.delete_bucket(request.app[RUNTIME], host_id, request.match_info["name"]))

    async def set_versioning(request: web.Request) -> web.StreamResponse:
        host_id = host_id_of(request)
        body = await body_of(request)
        return packed(await storage_link.set_versioning(request.app[RUNTIME], host_id,
                                                        request.match_info["name"], str(body.get("status", ""))))

    app.router.add_post("/agent/v1/storage/report", storage_report)
    app.router.add_get("/agent/v1/s3/credentials/{access_key_id}", s3_credential)
    app.router.add_post("/agent/v1/s3/buckets", create_bucket)
    app.router.add_get("/agent/v1/s3/buckets", list_buckets)
    app.router.add_get("/agent/v1/s3/buckets/{name}", get_bucket)
    app.router.add_delete("/agent/v1/s3/buckets/{name}", delete_bucket)
    app.router.add_put("/agent/v1/s3/buckets/{name}/versioning", set_versioning)
