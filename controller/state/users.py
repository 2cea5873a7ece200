"""Users: one role in one tenant; passwords arrive already hashed (argon2) from the proposer."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, invalid, not_found
from controller.state.registry import handles

ROLES = ("admin", "developer", "viewer")


def find_user(data: StateData, ident: str) -> dict[str, Any] | None:
    user = data.users.get(ident)
    if user is None and ident in data.user_names:
        user = data.users[data.user_names[ident]]
    return user


def insert_user(data: StateData, args: dict[str, Any], now: float) -> dict[str, Any]:
    if args["name"] in data.user_names:
        raise conflict(f"user {args['name']!r} already exists")
    if args["id"] in data.users:
        raise conflict(f"user id {args['id']!r} already exists")
    if args["tenant_id"] not in data.tenants:
        raise not_found("tenant", args["tenant_id"])
    if args["role"] not in ROLES:
        raise invalid(f"unknown role {args['role']!r}")
    user = {
        "id": args["id"],
        "name": args["name"],
        "tenant_id": args["tenant_id"],
        "role": args["role"],
        "disabled": False,
        "password_hash": args.get("password_hash"),
        "created_at": now,
    }
    data.users[user["id"]] = user
    data.user_names[user["name"]] = user["id"]
    return user


@handles("user.create")
def create_user(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    return insert_user(data, args, ctx["time"])


@handles("user.update")
def update_user(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    user = data.users.get(args["user_id"])
    if user is None:
        raise not_found("user", args["user_id"])
    changes: dict[str, Any] = args["changes"]
    if "role" in changes and changes["role"] not in ROLES:
        raise invalid(f"unknown role {changes['role']!r}")
    if args["user_id"] == ctx.get("actor_id") and (changes.get("disabled") or "role" in changes):
        raise invalid("you cannot disable yourself or change your own role")
    for name in ("role", "disabled", "password_hash"):
        if name in changes:
            user[name] = changes[name]
    return user


@handles("user.delete")
def delete_user(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    user = data.users.get(args["user_id"])
    if user is None:
        raise not_found("user", args["user_id"])
    if user["id"] == ctx.get("actor_id"):
        raise invalid("you cannot delete yourself")
    for key_id in [k for k, key in data.keys.items() if key["user_id"] == user["id"]]:
        del data.keys[key_id]
    for key_id in [k for k, cred in data.s3_credentials.items() if cred["user_id"] == user["id"]]:
        del data.s3_credentials[key_id]  # an S3 key acts as its user: it goes with them
    del data.users[user["id"]]
    del data.user_names[user["name"]]
