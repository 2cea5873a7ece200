"""Errors services raise; the API maps them to HTTP responses in the standard error format."""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(kind: str, ident: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{kind} {ident!r} not found")


def forbidden(message: str) -> ServiceError:
    return ServiceError(403, "forbidden", message)


def bad_request(message: str) -> ServiceError:
    return ServiceError(400, "bad_request", message)
