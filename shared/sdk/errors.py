"""Errors raised by the thecloud SDK."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_failed",
    503: "unavailable",
}

_MAX_MESSAGE = 500


class CloudError(Exception):
    """An API call failed: a non-2xx answer (``status`` > 0) or no answer at all (``status`` == 0)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        details = f"code {self.code}"
        if self.request_id:
            details += f", request {self.request_id}"
        return f"{self.message} ({details})"

    def __repr__(self) -> str:
        return (
            f"CloudError(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


def default_code(status: int) -> str:
    """The error code the API uses for ``status``, or ``http_<status>`` for others."""
    return _STATUS_CODES.get(status, f"http_{status}")


def error_from_body(status: int, body: bytes, headers: Mapping[str, str], reason: str = "") -> CloudError:
    """Build a CloudError from a response, tolerating bodies that are not the documented JSON shape."""
    request_id = headers.get("x-request-id") or None
    code = default_code(status)
    message = ""
    payload: Any = None
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        request_id = str(error.get("request_id") or "") or request_id
    elif payload is None and body:
        message = body.decode("utf-8", errors="replace").strip()[:_MAX_MESSAGE]
    if not message:
        message = reason or f"HTTP {status}"
    return CloudError(status, code, message, request_id)
