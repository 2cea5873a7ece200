"""Idempotency records: the first outcome of a keyed request, replayed for repeats within the TTL."""

from __future__ import annotations

import copy
from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict

TTL_SECONDS = 24 * 3600
PURGE_EVERY = 1_000


def record_key(ctx: CommandContext) -> str | None:
    key = ctx.get("idempotency_key")
    if not key:
        return None
    return f"{ctx.get('actor_id')}:{key}"


def lookup(data: StateData, ctx: CommandContext) -> dict[str, Any] | None:
    """The stored outcome for this key, or None. Raises conflict if the key was used for another request."""
    key = record_key(ctx)
    if key is None:
        return None
    stored = data.idempotency.get(key)
    if stored is None or stored["time"] < ctx["time"] - TTL_SECONDS:
        return None
    if stored["fingerprint"] != ctx.get("fingerprint"):
        raise conflict("Idempotency-Key was already used for a different request")
    outcome: dict[str, Any] = copy.deepcopy(stored["outcome"])
    return outcome


def remember(data: StateData, ctx: CommandContext, outcome: dict[str, Any]) -> None:
    key = record_key(ctx)
    if key is None:
        return
    stored = {"time": ctx["time"], "fingerprint": ctx.get("fingerprint"), "outcome": copy.deepcopy(outcome)}
    data.idempotency[key] = stored
    if data.revision % PURGE_EVERY == 0:
        horizon = ctx["time"] - TTL_SECONDS
        for stale in [k for k, v in data.idempotency.items() if v["time"] < horizon]:
            del data.idempotency[stale]
