"""Glue between the replicated state and the pure scheduler: host views, requests, choosing a host."""

from __future__ import annotations

import random
from typing import Any

from controller.services.errors import ServiceError
from controller.state.data import StateData
from controller.state.placements import inventory_of, resources_of
from scheduler.model import HostView, PlacementRequest, WeightSettings
from scheduler.select import NoValidHost, select_host

STRATEGIES = ("spread", "pack")
CANDIDATE_LIMIT = 8
_rng = random.Random()  # noqa: S311 - spreading load, not security


Planned = dict[str, dict[str, int]]  # host id -> resources already promised by the plan being made


def host_view(host: dict[str, Any], planned: Planned | None = None) -> HostView:
    used = host["used"]
    extra = (planned or {}).get(host["id"])
    if extra:
        used = {rc: used.get(rc, 0) + extra.get(rc, 0) for rc in {*used, *extra}}
    return HostView(id=host["id"], zone=host["zone"], state=host["state"], enabled=host["enabled"],
                    draining=host["draining"], kinds=frozenset(host["kinds"]), traits=frozenset(host["traits"]),
                    inventory=inventory_of(host), used=used, instance_count=host["instance_count"])


def plan(planned: Planned, host_id: str, instance: dict[str, Any]) -> None:
    used = planned.setdefault(host_id, {})
    for rc, amount in resources_of(instance).items():
        used[rc] = used.get(rc, 0) + amount


def settings(data: StateData) -> WeightSettings:
    return WeightSettings(strategy=str(data.meta.get("placement_strategy", "spread")),
                          candidate_limit=CANDIDATE_LIMIT)


def request_for(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset()) -> PlacementRequest:
    policy = None
    group_hosts: frozenset[str] = frozenset()
    group_name = instance.get("group")
    if group_name:
        group = data.server_groups.get(instance["tenant_id"], {}).get(group_name)
        if group is not None:
            policy = group["policy"]
            group_hosts = frozenset(
                data.instances[m]["host_id"] for m in group["members"]
                if m != instance.get("id") and m in data.instances and data.instances[m].get("host_id"))
    return PlacementRequest(resources=resources_of(instance), kind=instance["kind"], zone=instance.get("zone"),
                            required_traits=frozenset(instance.get("required_traits") or ()),
                            group_policy=policy, group_hosts=group_hosts, exclude_hosts=exclude)


def choose(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset(),
           planned: Planned | None = None) -> str:
    """The host for ``instance``; 409 no_valid_host explaining, per filter, why none fits."""
    views = [host_view(h, planned) for h in data.hosts.values()]
    try:
        return select_host(views, request_for(data, instance, exclude), settings(data), _rng).id
    except NoValidHost as exc:
        raise ServiceError(409, "no_valid_host", str(exc)) from None


def try_choose(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset(),
               planned: Planned | None = None) -> str | None:
    try:
        return choose(data, instance, exclude, planned)
    except ServiceError:
        return None
