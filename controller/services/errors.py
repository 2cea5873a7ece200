"""Errors services raise; the API maps them to HTTP responses in the standard error format."""

from __future__ import annotations


class ServiceError(Exception):
    """``audited`` is True when the refusal came from the state machine, which already wrote its audit record."""

    def __init__(self, status: int, code: str, message: str, audited: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.audited = audited


def not_found(kind: str, ident: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{kind} {ident!r} not found")


def forbidden(message: str) -> ServiceError:
    return ServiceError(403, "forbidden", message)


def bad_request(message: str) -> ServiceError:
    return ServiceError(400, "bad_request", message)
