"""Command handlers register here by op name; one module per resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData

Handler = Callable[[StateData, dict[str, Any], CommandContext], Any]

HANDLERS: dict[str, Handler] = {}


def handles(op: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if op in HANDLERS:
            raise RuntimeError(f"duplicate handler for {op}")
        HANDLERS[op] = fn
        return fn

    return register
