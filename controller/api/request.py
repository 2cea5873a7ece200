"""Parsed request data handed to handlers: caller context, validated body, common query options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from controller.api.errors import ApiError, describe_validation
from controller.services.context import RequestContext
from controller.services.runtime import Runtime

M = TypeVar("M", bound=BaseModel)
MAX_QUERY_VALUE = 256


@dataclass
class ApiRequest:
    http: web.Request
    rt: Runtime
    rc: RequestContext
    raw_body: bytes

    def path(self, name: str) -> str:
        return self.http.match_info[name]

    def body(self, model: type[M]) -> M:
        if not self.raw_body.strip():
            raise ApiError(400, "bad_request", "a JSON body is required")
        try:
            data = json.loads(self.raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "bad_request", f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "validation_failed", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise ApiError(422, "validation_failed", describe_validation(err)) from None

    def query(self, name: str) -> str | None:
        value = self.http.query.get(name)
        if value is not None and (len(value) > MAX_QUERY_VALUE or "\x00" in value):
            raise ApiError(400, "bad_request", f"query parameter {name!r} is too long or invalid")
        return value

    def flag(self, name: str) -> bool:
        value = self.query(name)
        if value is None or value.lower() in ("false", "0", "no", ""):
            return False
        if value.lower() in ("true", "1", "yes"):
            return True
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be true or false")

    def limit(self) -> int | None:
        value = self.query("limit")
        if value is None:
            return None
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise ApiError(400, "bad_request", "limit must be an integer between 1 and 1000")
        return int(value)

    def timestamp(self, name: str) -> float | None:
        value = self.query(name)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be an RFC 3339 time") from None


def json_response(data: Any, status: int = 200, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return web.Response(status=status, body=json.dumps(data), content_type="application/json", headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)
