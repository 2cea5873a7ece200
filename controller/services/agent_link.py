"""The controller's side of the agent protocol: heartbeats (leader memory), desired state, status reports.

Heartbeats never become Raft writes by themselves; only changes do: inventory or address changes, a host
coming back (up) and instance status changes.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from controller.services import hosts as host_service
from controller.services import migrations, storage_views
from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.state.data import StateData
from controller.state.placements import instances_on

REPORTED_HOST_FIELDS = ("driver", "kinds", "traits", "inventory", "agent_address", "agent_version", "migration")
MAX_WATCH_SECONDS = 30.0


def _rc(what: str) -> RequestContext:
    return RequestContext(request_id=f"agent-{what}-{uuid.uuid4().hex[:8]}", caller=SYSTEM)


class NotLeader(Exception):
    def __init__(self, leader_agent_address: str | None) -> None:
        super().__init__("not the leader")
        self.leader_agent_address = leader_agent_address


def leader_agent_address(rt: Runtime, data: StateData) -> str | None:
    leader = rt.store.status().leader
    member = data.members.get(leader or "", {})
    address = member.get("agent_address")
    return str(address) if address else None


def stale_instances(data: StateData, host_id: str, running: list[list[Any]]) -> list[str]:
    """Instances the agent still has that now belong elsewhere (or to a newer generation): must be fenced."""
    stale = []
    for instance_id, generation in running:
        instance = data.instances.get(instance_id)
        if instance is None or instance.get("host_id") != host_id or instance["generation"] != generation:
            stale.append(str(instance_id))
    return stale


async def heartbeat(rt: Runtime, host_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    with rt.view() as data:
        if not rt.store.is_leader():
            raise NotLeader(leader_agent_address(rt, data))
        host = data.hosts.get(host_id)
        if host is None:
            raise ServiceError(403, "unknown_host", "this host was deleted from the cluster; join it again")
        rt.liveness.beat(host_id, payload)
        changes = {k: payload[k] for k in REPORTED_HOST_FIELDS if k in payload and payload[k] != host.get(k)}
        state = host["state"]
        stale = stale_instances(data, host_id, payload.get("instances", []))
        if not changes and state == "up":  # nearly every beat: nothing to write, answered under this one lock
            return _beat_answer(rt, data, host, stale)
    if changes:
        await rt.propose(_rc("update"), "host.update", {"host_id": host_id, **changes}, action="", target=host_id,
                         tenant_id=None)
    if state != "up":
        state = await _come_back(rt, host_id, state, stale)
    with rt.view() as data:
        return _beat_answer(rt, data, data.hosts[host_id], stale)


def _beat_answer(rt: Runtime, data: StateData, host: dict[str, Any], stale: list[str]) -> dict[str, Any]:
    return {"state": host["state"], "desired_rev": host["desired_rev"], "fence": stale,
            "heartbeat_interval": rt.compute.heartbeat_interval, "controllers": host_service.agent_endpoints(data)}


async def _come_back(rt: Runtime, host_id: str, state: str, stale: list[str]) -> str:
    """A host that was new or down is up only once it runs nothing that was moved away (fencing)."""
    if stale:
        if state != "fencing":
            await rt.propose(_rc("fence"), "host.set_state",
                             {"host_id": host_id, "state": "fencing",
                              "reason": f"returned with {len(stale)} instance(s) that now run elsewhere; "
                                        "stopping them before it may run anything"},
                             action="host.fence", target=host_id, tenant_id=None)
        return "fencing"
    await rt.propose(_rc("up"), "host.set_state",
                     {"host_id": host_id, "state": "up", "expect": state, "reason": "heartbeating"},
                     action="host.up", target=host_id, tenant_id=None)
    return "up"


def desired_for(data: StateData, host_id: str) -> dict[str, Any]:
    host = data.hosts[host_id]
    instances = []
    if host["state"] in ("up", "fencing", "new"):
        for i in instances_on(data, host_id):
            if i.get("host_id") == host_id:
                instances.append(_item(data, i))
    incoming = migrations.incoming(data, host, _item) if host["state"] == "up" else []
    return {"rev": host["desired_rev"], "state": host["state"], "instances": instances, "incoming": incoming}


def _item(data: StateData, i: dict[str, Any]) -> dict[str, Any]:
    item = {k: i.get(k) for k in (
        "id", "name", "generation", "kind", "image", "vcpus", "memory_mb", "disk_gb", "command", "env",
        "ports", "user_data", "restart_policy", "tenant_id", "desired", "action_seq", "reboot_seq",
        "spec_rev", "vm_image")}
    item["volumes"] = storage_views.instance_volumes(data, i["id"])
    item["nic"] = _nic(data, i)
    leaving = migrations.outgoing(data, i) if i.get("migration") else None
    if leaving is not None:  # the target is ready: the agent migrates it (agent/migrations.py)
        item["migration"] = leaving
    return item


def _nic(data: StateData, instance: dict[str, Any]) -> dict[str, Any] | None:
    """The instance's VPC port as the agent needs it (netd plumbs it; the driver names the tap and the MAC)."""
    port = data.ports.get(instance.get("port_id") or "")
    if port is None:
        return None
    subnet = data.subnets.get(port.get("subnet_id") or "") or {}
    return {"port_id": port["id"], "mac": port["mac"], "ip": port.get("ip", ""), "gateway": subnet.get("gateway", "")}


async def desired(rt: Runtime, host_id: str, after: int, wait: float) -> dict[str, Any]:
    """Long-poll: returns as soon as the host's desired state is newer than ``after`` (or on timeout)."""
    deadline = rt.clock() + min(max(wait, 0.0), MAX_WATCH_SECONDS)
    while True:
        with rt.view() as data:
            if host_id not in data.hosts:
                raise ServiceError(403, "unknown_host", "this host was deleted from the cluster; join it again")
            host = data.hosts[host_id]
            if host["desired_rev"] > after or rt.clock() >= deadline:
                return desired_for(data, host_id)
        await rt.revisions.wait_until(functools.partial(_newer, data.hosts, host_id, after),
                                      max(0.0, deadline - rt.clock()))


def _newer(hosts: dict[str, dict[str, Any]], host_id: str, after: int) -> bool:
    """The host's desired state changed since ``after`` (or the host is gone): its watch should answer."""
    host = hosts.get(host_id)
    return host is None or host["desired_rev"] > after


async def report(rt: Runtime, host_id: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Proposes only what changed compared to the replicated state."""
    changed = []
    with rt.view() as data:
        if host_id not in data.hosts:
            raise ServiceError(403, "unknown_host", "this host was deleted from the cluster; join it again")
        for item in reports:
            instance = data.instances.get(str(item.get("id")))
            if instance is None or instance.get("host_id") != host_id or instance["generation"] != item.get(
                    "generation"):
                continue
            if item.get("status") == "gone" and instance["desired"] == "deleted":
                changed.append(item)
            elif (item.get("status") != instance["status"] or item.get("reason", "") != instance["status_reason"]
                  or list(item.get("addresses", [])) != instance["addresses"]
                  or ("netns" in item and item["netns"] != instance.get("netns"))) and instance["desired"] != "deleted":
                changed.append(item)
    if not changed:
        return {"applied": 0}
    out = await rt.propose(_rc("report"), "instance.report", {"host_id": host_id, "reports": changed}, action="",
                           target=host_id, tenant_id=None)
    return dict(out.result)
