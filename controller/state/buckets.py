"""S3 bucket records: names are global (S3 rules), each bucket belongs to a tenant and lives on one storaged."""

from __future__ import annotations

from typing import Any

from controller.state import quotas
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, not_found
from controller.state.registry import handles

VERSIONING = ("Enabled", "Suspended")


def get_bucket(data: StateData, name: str) -> dict[str, Any]:
    bucket = data.buckets.get(name)
    if bucket is None:
        raise ApplyError(404, "NoSuchBucket", f"bucket {name!r} does not exist")
    return bucket


@handles("bucket.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    existing = data.buckets.get(args["name"])
    if existing is not None:
        if existing["tenant_id"] == tenant_id:
            raise ApplyError(409, "BucketAlreadyOwnedByYou", f"bucket {args['name']!r} is already yours")
        raise ApplyError(409, "BucketAlreadyExists", f"bucket name {args['name']!r} is taken; choose another")
    quotas.check(data, tenant_id, {"buckets": 1})
    bucket = {"name": args["name"], "tenant_id": tenant_id, "created_by": args["user_id"], "versioning": "",
              "created_at": ctx["time"], "host_id": args["host_id"]}
    data.buckets[bucket["name"]] = bucket
    quotas.consume(data, tenant_id, {"buckets": 1})
    return bucket


@handles("bucket.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    bucket = get_bucket(data, args["name"])
    del data.buckets[bucket["name"]]
    quotas.consume(data, bucket["tenant_id"], {"buckets": -1})


@handles("bucket.set_versioning")
def set_versioning(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    bucket = get_bucket(data, args["name"])
    if args["status"] not in VERSIONING:
        raise ApplyError(400, "IllegalVersioningConfigurationException",
                         f"versioning status must be one of {', '.join(VERSIONING)}")
    bucket["versioning"] = args["status"]
    return bucket
