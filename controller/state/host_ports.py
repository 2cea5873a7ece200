"""Published host ports (port mappings, host port -> instance port): unique per host and protocol.

Checked at create (``ports.check_mappings``) and again whenever an instance is placed on a host after that
(pending placement, drain, failover): ``placements.check_claim`` refuses a host where another instance
already publishes one of its host ports, so a mapping is never silently shadowed on the new host. The
scheduler avoids such hosts up front (``busy_hosts`` feeds its ``host_ports`` filter).
"""

from __future__ import annotations

from typing import Any

from controller.state.data import StateData

Key = tuple[str, int]


def published(data: StateData, instance: dict[str, Any]) -> list[dict[str, Any]]:
    """The instance's mappings: its port's, or (not created yet) its spec's ``ports``."""
    port = data.ports.get(instance.get("port_id") or "")
    if port is not None:
        return list(port["port_mappings"])
    return [{"protocol": p.get("protocol", "tcp"), "host_port": p["host_port"]} for p in instance.get("ports") or []]


def keys_of(mappings: list[dict[str, Any]]) -> set[Key]:
    return {(m["protocol"], int(m["host_port"])) for m in mappings}


def taken_on(data: StateData, host_id: str, skip: str | None = None) -> dict[Key, str]:
    """(protocol, host port) -> name of the instance on ``host_id`` publishing it (``skip``: an instance id)."""
    taken: dict[Key, str] = {}
    for instance_id in data.host_instances.get(host_id, ()):
        instance = data.instances.get(instance_id)
        if instance is None or instance_id == skip:
            continue
        port = data.ports.get(instance.get("port_id") or "")
        if port is not None:
            for key in keys_of(port["port_mappings"]):
                taken[key] = instance["name"]
    return taken


def conflict(data: StateData, host_id: str, instance: dict[str, Any]) -> str | None:
    """Why ``instance`` cannot publish its host ports on ``host_id`` (None: it can)."""
    wanted = keys_of(published(data, instance))
    if not wanted:
        return None
    taken = taken_on(data, host_id, instance.get("id"))
    clashes = sorted(wanted & taken.keys(), key=lambda k: (k[1], k[0]))
    if not clashes:
        return None
    protocol, number = clashes[0]
    more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
    return f"host port {number}/{protocol} is already published there by instance {taken[clashes[0]]}{more}"


def busy_hosts(data: StateData, instance: dict[str, Any]) -> frozenset[str]:
    """The hosts where another instance publishes one of ``instance``'s host ports. One pass over the ports,
    only for an instance that publishes any (most publish none)."""
    wanted = keys_of(published(data, instance))
    if not wanted:
        return frozenset()
    own = instance.get("port_id")
    hosts = set()
    for port in data.ports.values():
        if port["port_mappings"] and port["id"] != own and wanted & keys_of(port["port_mappings"]):
            other = data.instances.get(port["instance_id"])
            if other is not None and other.get("host_id"):
                hosts.add(other["host_id"])
    return frozenset(hosts)
