"""Secrets: values arrive already encrypted (AES-256-GCM) by the proposer; plaintext never enters the log."""

from __future__ import annotations

from typing import Any

from controller.state import quotas
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, not_found
from controller.state.registry import handles

MAX_VERSIONS_KEPT = 10


def _tenant_secrets(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Read-only view of a tenant's secrets: a refused command must not leave an empty entry behind."""
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    return data.secrets.get(tenant_id, {})


@handles("secret.create")
def create_secret(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    secrets = _tenant_secrets(data, tenant_id)
    if args["name"] in secrets:
        raise conflict(f"secret {args['name']!r} already exists")
    quotas.check(data, tenant_id, {"secrets": 1})
    now = ctx["time"]
    secret = {
        "name": args["name"],
        "tenant_id": tenant_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "created_by": ctx.get("actor_name", ""),
        "versions": {"1": args["ciphertext"]},
    }
    data.secrets.setdefault(tenant_id, {})[args["name"]] = secret
    quotas.consume(data, tenant_id, {"secrets": 1})
    return secret


@handles("secret.rotate")
def rotate_secret(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    secret = _tenant_secrets(data, args["tenant_id"]).get(args["name"])
    if secret is None:
        raise not_found("secret", args["name"])
    secret["version"] += 1
    secret["updated_at"] = ctx["time"]
    secret["versions"][str(secret["version"])] = args["ciphertext"]
    for old in sorted(secret["versions"], key=int)[:-MAX_VERSIONS_KEPT]:
        del secret["versions"][old]
    return secret


@handles("secret.delete")
def delete_secret(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    secrets = _tenant_secrets(data, args["tenant_id"])
    if args["name"] not in secrets:
        raise not_found("secret", args["name"])
    del secrets[args["name"]]
    quotas.consume(data, args["tenant_id"], {"secrets": -1})
