"""Errors raised inside the apply step; they reject a command without changing state."""

from __future__ import annotations


class ApplyError(Exception):
    """A command was refused by the state machine. Maps 1:1 to an API error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "code": self.code, "message": self.message}


def not_found(kind: str, ident: str) -> ApplyError:
    return ApplyError(404, "not_found", f"{kind} {ident!r} not found")


def conflict(message: str) -> ApplyError:
    return ApplyError(409, "conflict", message)


def forbidden(message: str) -> ApplyError:
    return ApplyError(403, "forbidden", message)


def unauthorized(message: str) -> ApplyError:
    return ApplyError(401, "unauthorized", message)


def invalid(message: str) -> ApplyError:
    return ApplyError(422, "validation_failed", message)
