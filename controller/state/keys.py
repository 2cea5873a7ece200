"""API keys: stored as a SHA-256 of a 256-bit random secret (high entropy, so no slow hash is needed)."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, not_found
from controller.state.registry import handles


def insert_key(data: StateData, args: dict[str, Any], now: float) -> dict[str, Any]:
    if args["id"] in data.keys:
        raise conflict(f"key id {args['id']!r} already exists")
    user = data.users.get(args["user_id"])
    if user is None:
        raise not_found("user", args["user_id"])
    key = {
        "id": args["id"],
        "name": args["name"],
        "user_id": user["id"],
        "tenant_id": user["tenant_id"],
        "secret_hash": args["secret_hash"],
        "created_at": now,
        "expires_at": args.get("expires_at"),
        "revoked": False,
    }
    data.keys[key["id"]] = key
    return key


@handles("key.create")
def create_key(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """The result (kept in the idempotency record for a replay) carries the key sealed with the cluster key;
    the key record itself only keeps the hash."""
    key = insert_key(data, args, ctx["time"])
    return {**key, "sealed_secret": args.get("sealed_secret")}


@handles("key.revoke")
def revoke_key(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    key = data.keys.get(args["key_id"])
    if key is None:
        raise not_found("key", args["key_id"])
    key["revoked"] = True
    key["revoked_at"] = ctx["time"]
    return key
