"""Builds the OpenAPI 3.1 document from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from controller.api.policy import POLICY
from controller.api.routes import ROUTES, Route
from controller.api.schemas import ErrorBody

REF = "#/components/schemas/{model}"
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "marker": {"type": "string", "maxLength": 256},
    "stale": {"type": "boolean"},
    "all_tenants": {"type": "boolean"},
    "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"},
    "outcome": {"type": "string", "enum": ["success", "denied", "failed"]},
    "after": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "command": {"type": "array", "items": {"type": "string", "maxLength": 4096}, "minItems": 1, "maxItems": 256},
    "tty": {"type": "boolean"},
}


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody}
    for route in ROUTES:
        for model in (route.body, route.response):
            if model is not None:
                seen[model.__name__] = model
    return list(seen.values())


def _operation(route: Route, keys: dict[Any, Any]) -> dict[str, Any]:
    rule = POLICY[route.key]
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    params += [{"name": name, "in": "query", "required": False,
                "schema": QUERY_SCHEMAS.get(name, {"type": "string", "maxLength": 256})} for name in route.query]
    if route.mutating:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,200}$"}})
    ok: dict[str, Any] = {"description": "success"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": keys[(route.response, "serialization")]}}
    elif route.status not in (101, 204):  # 101: a WebSocket, no body
        ok["content"] = {route.content_type: {"schema": {"type": "string"}}}
    error = {"description": "error", "content": {"application/json": {"schema": keys[(ErrorBody, "serialization")]}}}
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "parameters": params,
        "responses": {str(route.status): ok, "default": error},
        "x-roles": "public" if rule.public else ("cluster-admin" if rule.cluster_admin else sorted(rule.roles)),
    }
    if rule.public:
        op["security"] = []
    if route.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": keys[(route.body, "validation")]}}}
    elif route.stream_body:
        op["requestBody"] = {"required": True,
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}}
    return op


def build() -> dict[str, Any]:
    models = _models()
    modes: tuple[Literal["validation", "serialization"], ...] = ("validation", "serialization")
    pairs = [(m, mode) for mode in modes for m in models]
    keys, defs = models_json_schema(pairs, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, keys)
    return {
        "openapi": "3.1.0",
        "info": {"title": "thecloud API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
