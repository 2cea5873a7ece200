"""S3 access keys, bound to a thecloud user and tenant. The secret arrives encrypted by the proposer (SigV4
verifiers need the plaintext, so it cannot be hashed); it never enters the log in the clear."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.registry import handles

MAX_PER_USER = 20


@handles("s3key.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    user = data.users.get(args["user_id"])
    if user is None or user["tenant_id"] != args["tenant_id"]:
        raise not_found("user", args["user_id"])
    if args["access_key_id"] in data.s3_credentials:
        raise conflict("access key id already exists; retry")
    owned = sum(1 for c in data.s3_credentials.values() if c["user_id"] == user["id"])
    if owned >= MAX_PER_USER:
        raise ApplyError(403, "quota_exceeded", f"a user may hold at most {MAX_PER_USER} S3 access keys")
    record = {"access_key_id": args["access_key_id"], "tenant_id": args["tenant_id"], "user_id": user["id"],
              "secret_ciphertext": args["ciphertext"], "created_at": ctx["time"]}
    data.s3_credentials[record["access_key_id"]] = record
    return {k: v for k, v in record.items() if k != "secret_ciphertext"}


@handles("s3key.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    record = data.s3_credentials.get(args["access_key_id"])
    if record is None or record["tenant_id"] != args["tenant_id"] or record.get("internal"):
        raise not_found("S3 access key", args["access_key_id"])
    if args.get("user_id") is not None and record["user_id"] != args["user_id"]:
        raise not_found("S3 access key", args["access_key_id"])
    del data.s3_credentials[record["access_key_id"]]
