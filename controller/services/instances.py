"""Instances: create (schedule, then claim in apply, retrying a lost race), list, show, actions, delete."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from controller.services import compute_views, net_lookup, net_ports, placement, views
from controller.services import volumes as volume_service
from controller.services.context import RequestContext
from controller.services.errors import ServiceError, bad_request
from controller.services.runtime import Runtime
from controller.services.scope import owned, target_tenant
from controller.state import idempotency, quotas
from controller.state import instances as instance_state
from controller.state.data import StateData
from controller.state.errors import ApplyError
from shared import imageref

PLACEMENT_ATTEMPTS = 5
DEFAULT_TYPES: dict[str, dict[str, int]] = {
    "tiny": {"vcpus": 1, "memory_mb": 128, "disk_gb": 1},
    "small": {"vcpus": 1, "memory_mb": 512, "disk_gb": 5},
    "medium": {"vcpus": 2, "memory_mb": 2048, "disk_gb": 20},
    "large": {"vcpus": 4, "memory_mb": 8192, "disk_gb": 40},
}


def instance_types(data: StateData) -> dict[str, dict[str, int]]:
    return {**DEFAULT_TYPES, **{n: {k: t[k] for k in ("vcpus", "memory_mb", "disk_gb")}
                                for n, t in data.instance_types.items()}}


def _tenant_id(rt: Runtime, rc: RequestContext, tenant: str | None) -> str:
    with rt.view() as data:
        tenant_id: str = target_tenant(data, rc.caller, tenant)["id"]
        return tenant_id


def find(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    """By id or by name, only within the tenant: another tenant's instance is simply not found."""
    return owned(data.instances, tenant_id, ident, "instance", data.instance_names)


def _view(data: StateData, instance: dict[str, Any], with_events: bool = False,
          rc: RequestContext | None = None) -> dict[str, Any]:
    host = data.hosts.get(instance.get("host_id") or "")
    viewer = rc is not None and rc.caller.role == "viewer"
    out = compute_views.instance(instance, host["name"] if host else None, with_events, redact_env=viewer)
    out["reported_addresses"], out["addresses"] = out["addresses"], net_lookup.address(data, instance)
    return out


def _spec(data: StateData, body: dict[str, Any]) -> dict[str, Any]:
    spec = dict(body)
    type_name = spec.get("instance_type")
    if type_name is not None:
        itype = instance_types(data).get(type_name)
        if itype is None:
            raise bad_request(f"unknown instance type {type_name!r}; see GET /v1/instance-types")
        for key, value in itype.items():
            if spec.get(key) is None:
                spec[key] = value
    missing = [k for k in ("vcpus", "memory_mb", "disk_gb") if spec.get(k) is None]
    if missing:
        raise ServiceError(422, "validation_failed", f"give instance_type or all of vcpus, memory_mb, disk_gb "
                                                      f"(missing {', '.join(missing)})")
    zone = spec.get("zone")
    if zone is not None and zone not in {h["zone"] for h in data.hosts.values()}:
        raise bad_request(f"unknown zone {zone!r}: no host is in it")
    if spec.get("kind") == "vm":  # VMs boot registered images, containers Docker references
        if spec.get("image") not in data.images:
            raise bad_request(f"unknown image {spec.get('image')!r}; see GET /v1/images")
    else:
        try:
            imageref.parse(str(spec.get("image") or ""))
        except imageref.ImageRefError as err:
            raise bad_request(f"invalid container image {spec.get('image')!r}: {err}") from None
    return spec


def _stored_outcome(rt: Runtime, rc: RequestContext) -> dict[str, Any] | None:
    """The outcome the state machine remembered for this Idempotency-Key, if the request was seen before."""
    if not rc.idempotency_key:
        return None
    with rt.view() as data:
        try:
            return idempotency.lookup(data, rc.command_ctx(rt.clock(), "", "", None))
        except ApplyError as err:  # the key was used for another request
            raise ServiceError(err.status, err.code, err.message) from None


async def create(rt: Runtime, rc: RequestContext, body: dict[str, Any],
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    tenant_id = _tenant_id(rt, rc, tenant)
    instance_id = uuid.uuid4().hex
    last_conflict = ""
    for attempt in range(PLACEMENT_ATTEMPTS):
        # The state machine remembers a keyed request's first outcome, the lost race included: each retry
        # gets its own key derived from the client's, so it is not answered with that replay (and a repeat
        # of the whole request walks the same keys to the same final outcome).
        attempt_rc = rc if attempt == 0 or not rc.idempotency_key else dataclasses.replace(
            rc, idempotency_key=f"{rc.idempotency_key}:placement-{attempt}")
        stored = _stored_outcome(rt, attempt_rc)
        if stored is not None:  # a repeat: answer as the first time, before the checks below refuse it
            if stored["ok"]:
                with rt.view() as data:
                    return _view(data, stored["result"]), True
            if stored["error"]["code"] == "placement_conflict":
                last_conflict = stored["error"]["message"]
                continue
            raise ServiceError(int(stored["error"]["status"]), str(stored["error"]["code"]),
                               str(stored["error"]["message"]), audited=True)
        with rt.view() as data:
            spec = _spec(data, body)
            spec["network"] = {**net_ports.network_for(data, tenant_id, spec), **net_ports.port_identity()}
            if spec["name"] in data.instance_names.get(tenant_id, {}):
                raise ServiceError(409, "conflict", f"instance {spec['name']!r} already exists")
            spec["volumes"] = volume_service.resolve_for_instance(data, tenant_id, spec.get("volumes") or [])
            host_id = placement.choose(data, {**spec, "id": instance_id, "tenant_id": tenant_id,
                                              "required_host": volume_service.host_of(data, spec["volumes"])},
                                       views=rt.host_views)
        args = {**spec, "id": instance_id, "tenant_id": tenant_id, "host_id": host_id}
        try:
            out = await rt.propose(attempt_rc, "instance.create", args, action="instance.create",
                                   target=spec["name"], tenant_id=tenant_id)
        except ServiceError as err:
            if err.code != "placement_conflict":
                raise
            last_conflict = err.message  # another placement won the race for that host: choose again
            continue
        with rt.view() as data:
            return _view(data, out.result), out.replayed
    raise ServiceError(409, "no_valid_host", f"placement kept losing races; last: {last_conflict}")


async def create_batch(rt: Runtime, rc: RequestContext, template: dict[str, Any], name_prefix: str, count: int,
                       tenant: str | None) -> tuple[dict[str, Any], bool]:
    """``count`` instances of one spec, named ``{name_prefix}-1`` .. ``-{count}``, placed in ONE Raft command.

    Hosts are chosen one after the other, each choice counting the earlier ones (``placement.choose_many``);
    apply re-checks every claim and takes all or none. A lost race (409 placement_conflict: a host filled up
    meanwhile) re-plans the whole batch, like ``create`` does for one instance.
    """
    await rt.consistent(rc)
    tenant_id = _tenant_id(rt, rc, tenant)
    names = [f"{name_prefix}-{i}" for i in range(1, count + 1)]
    ids = [uuid.uuid4().hex for _ in names]
    target = f"{name_prefix}-1..{count}"
    last_conflict = ""
    for attempt in range(PLACEMENT_ATTEMPTS):
        attempt_rc = rc if attempt == 0 or not rc.idempotency_key else dataclasses.replace(
            rc, idempotency_key=f"{rc.idempotency_key}:placement-{attempt}")
        stored = _stored_outcome(rt, attempt_rc)
        if stored is not None:  # a repeat: answer as the first time (see create)
            if stored["ok"]:
                return _batch_view(rt, rc, stored["result"]["ids"]), True
            if stored["error"]["code"] == "placement_conflict":
                last_conflict = stored["error"]["message"]
                continue
            raise ServiceError(int(stored["error"]["status"]), str(stored["error"]["code"]),
                               str(stored["error"]["message"]), audited=True)
        with rt.view() as data:
            spec = _spec(data, {k: v for k, v in template.items() if k != "name"})
            spec["network"] = net_ports.network_for(data, tenant_id, spec)
            existing = data.instance_names.get(tenant_id, {})
            taken = [n for n in names if n in existing]
            if taken:
                raise ServiceError(409, "conflict", f"instance {taken[0]!r} already exists"
                                                    + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""))
            try:  # re-checked in apply; checked here too, so that no plan is made for a batch that cannot fit
                quotas.check(data, tenant_id, {k: v * count for k, v in
                                               instance_state.quota_deltas(spec).items()})
            except ApplyError as err:
                raise ServiceError(err.status, err.code, err.message) from None
            hosts = placement.choose_many(data, {**spec, "tenant_id": tenant_id}, names, rt.host_views)
        args = {"tenant_id": tenant_id, "spec": spec,
                "items": [{"id": i, "name": n, "host_id": h, **net_ports.port_identity()}
                          for i, n, h in zip(ids, names, hosts, strict=True)]}
        try:
            out = await rt.propose(attempt_rc, "instance.create_batch", args, action="instance.create_batch",
                                   target=target, tenant_id=tenant_id)
        except ServiceError as err:
            if err.code != "placement_conflict":
                raise
            last_conflict = err.message
            continue
        return _batch_view(rt, rc, out.result["ids"]), out.replayed
    raise ServiceError(409, "no_valid_host", f"placement kept losing races; last: {last_conflict}")


def _batch_view(rt: Runtime, rc: RequestContext, ids: list[str]) -> dict[str, Any]:
    with rt.view() as data:
        return {"items": [_view(data, data.instances[i], rc=rc) for i in ids if i in data.instances],
                "next_marker": None}


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None, tenant: str | None,
                status: str | None, tag: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        own = {i: data.instances[i] for i in data.instance_names.get(tenant_id, {}).values() if i in data.instances}

        def keep(i: dict[str, Any]) -> bool:
            return (status is None or i["status"] == status) and (tag is None or tag in i["tags"])

        items, nxt = views.page(own, limit, marker, keep=keep)
        return {"items": [_view(data, i, rc=rc) for i in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return _view(data, find(data, tenant_id, ident), with_events=True, rc=rc)


async def _propose_on(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, op: str, action: str,
                      extra: dict[str, Any]) -> Any:
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        instance_id = find(data, tenant_id, ident)["id"]
    out = await rt.propose(rc, op, {"id": instance_id, **extra}, action=action, target=ident, tenant_id=tenant_id)
    return out.result


async def act(rt: Runtime, rc: RequestContext, ident: str, verb: str, tenant: str | None) -> dict[str, Any]:
    result = await _propose_on(rt, rc, ident, tenant, "instance.action", f"instance.{verb}", {"action": verb})
    with rt.view() as data:
        return _view(data, data.instances.get(result["id"], result))


async def resize(rt: Runtime, rc: RequestContext, ident: str, body: dict[str, Any],
                 tenant: str | None) -> dict[str, Any]:
    """New CPU/memory/disk on the same host (Nova-style resize without the migration). The agent applies it:
    containers in place, VMs cold (shut down, redefined, started again if they were running)."""
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        instance = find(data, tenant_id, ident)
        sizes = {k: instance[k] for k in ("vcpus", "memory_mb", "disk_gb")}
        type_name = body.get("instance_type")
        if type_name is not None:
            itype = instance_types(data).get(type_name)
            if itype is None:
                raise bad_request(f"unknown instance type {type_name!r}; see GET /v1/instance-types")
            sizes.update(itype)
        sizes.update({k: v for k, v in body.items() if k in sizes and v is not None})
        instance_id = instance["id"]
    out = await rt.propose(rc, "instance.resize", {"id": instance_id, **sizes, "instance_type": type_name},
                           action="instance.resize", target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        return _view(data, data.instances.get(out.result["id"], out.result), rc=rc)


async def update(rt: Runtime, rc: RequestContext, ident: str, changes: dict[str, Any],
                 tenant: str | None) -> dict[str, Any]:
    result = await _propose_on(rt, rc, ident, tenant, "instance.update", "instance.update", changes)
    with rt.view() as data:
        return _view(data, data.instances.get(result["id"], result))


async def delete(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    await rt.consistent(rc)
    await _propose_on(rt, rc, ident, tenant, "instance.delete", "instance.delete", {})


def _agent_target(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> tuple[str, str, str]:
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        instance = find(data, tenant_id, ident)
        host = data.hosts.get(instance.get("host_id") or "")
        if host is None or host["state"] != "up" or not host.get("agent_address"):
            raise ServiceError(409, "not_running", f"instance {ident!r} is not on a reachable host")
        return host["agent_address"], host["id"], instance["id"]


async def agent_call(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, what: str,
                     body: dict[str, Any] | None = None) -> dict[str, Any]:
    """stats, exec and console are answered by the instance's agent over mutual TLS."""
    await rt.consistent(rc)
    address, host_id, instance_id = _agent_target(rt, rc, ident, tenant)
    if rt.agent_client is None:
        raise ServiceError(503, "unavailable", "agent links are not available on this controller")
    method = "POST" if body is not None else "GET"
    return await rt.agent_client.call(address, host_id, method, f"/agent/v1/instances/{instance_id}/{what}", body)


async def logs(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, tail: int | None,
               follow: bool) -> AsyncIterator[bytes]:
    await rt.consistent(rc)
    address, host_id, instance_id = _agent_target(rt, rc, ident, tenant)
    if rt.agent_client is None:
        raise ServiceError(503, "unavailable", "agent links are not available on this controller")
    query = f"?follow={'true' if follow else 'false'}" + (f"&tail={tail}" if tail is not None else "")
    return rt.agent_client.stream(address, host_id, f"/agent/v1/instances/{instance_id}/logs{query}")


async def create_group(rt: Runtime, rc: RequestContext, name: str, policy: str, tenant: str | None) -> dict[str, Any]:
    tenant_id = _tenant_id(rt, rc, tenant)
    out = await rt.propose(rc, "group.create", {"tenant_id": tenant_id, "name": name, "policy": policy},
                           action="server_group.create", target=name, tenant_id=tenant_id)
    return _group_view(out.result)


def _group_view(group: dict[str, Any]) -> dict[str, Any]:
    return {**group, "members": list(group["members"]), "created_at": views.iso(group["created_at"])}


async def list_groups(rt: Runtime, rc: RequestContext, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return {"items": [_group_view(g) for _, g in sorted(data.server_groups.get(tenant_id, {}).items())],
                "next_marker": None}


async def delete_group(rt: Runtime, rc: RequestContext, name: str, tenant: str | None) -> None:
    tenant_id = _tenant_id(rt, rc, tenant)
    await rt.propose(rc, "group.delete", {"tenant_id": tenant_id, "name": name}, action="server_group.delete",
                     target=name, tenant_id=tenant_id)


async def list_types(rt: Runtime, rc: RequestContext) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        return {"items": [{"name": n, **t} for n, t in sorted(instance_types(data).items())], "next_marker": None}


async def create_type(rt: Runtime, rc: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    if body["name"] in DEFAULT_TYPES:
        raise ServiceError(409, "conflict", f"instance type {body['name']!r} is built in")
    out = await rt.propose(rc, "instance_type.create", body, action="instance_type.create", target=body["name"],
                           tenant_id=None)
    return dict(out.result)


async def delete_type(rt: Runtime, rc: RequestContext, name: str) -> None:
    await rt.propose(rc, "instance_type.delete", {"name": name}, action="instance_type.delete", target=name,
                     tenant_id=None)
