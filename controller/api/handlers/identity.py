"""Login, whoami, roles, tenants and quotas."""

from __future__ import annotations

from aiohttp import web

from controller.api import schemas
from controller.api.policy import ROLE_DESCRIPTIONS
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import auth, tenants


async def login(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.LoginRequest)
    return json_response(await auth.login(req.rt, req.rc, body.username, body.password))


async def whoami(req: ApiRequest) -> web.StreamResponse:
    return json_response(await auth.whoami(req.rt, req.rc))


async def list_roles(req: ApiRequest) -> web.StreamResponse:
    await req.rt.consistent(req.rc)
    return json_response({"items": [{"name": n, "description": d} for n, d in ROLE_DESCRIPTIONS.items()]})


async def create_tenant(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.TenantCreate)
    tenant, replayed = await tenants.create(req.rt, req.rc, body.name, body.description)
    return json_response(tenant, 201, replayed)


async def list_tenants(req: ApiRequest) -> web.StreamResponse:
    return json_response(await tenants.list_(req.rt, req.rc, req.limit(), req.query("marker")))


async def get_tenant(req: ApiRequest) -> web.StreamResponse:
    return json_response(await tenants.get(req.rt, req.rc, req.path("tenant")))


async def delete_tenant(req: ApiRequest) -> web.StreamResponse:
    await tenants.delete(req.rt, req.rc, req.path("tenant"))
    return no_content()


async def get_tenant_quota(req: ApiRequest) -> web.StreamResponse:
    return json_response(await tenants.get_quota(req.rt, req.rc, req.path("tenant")))


async def set_tenant_quota(req: ApiRequest) -> web.StreamResponse:
    body = req.body(schemas.QuotaUpdate)
    limits = body.limits.model_dump(exclude_none=True)
    return json_response(await tenants.set_quota(req.rt, req.rc, req.path("tenant"), limits))


async def get_own_quota(req: ApiRequest) -> web.StreamResponse:
    return json_response(await tenants.get_quota(req.rt, req.rc, None))
