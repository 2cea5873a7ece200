"""netd's side of the agent listener: its host's network document (long-poll) and its reports.

A report becomes a Raft write only when something changed: the host's VTEP or backend, or a port's state.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Any

from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.network_views import host_network
from controller.services.runtime import Runtime
from controller.state import netindex

MAX_WATCH_SECONDS = 30.0
BACKEND_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_ERROR = 1024


def _known(data: Any, host_id: str) -> None:
    if host_id not in data.hosts:
        raise ServiceError(403, "unknown_host", "this host was deleted from the cluster; join it again")


async def network(rt: Runtime, host_id: str, after: int, wait: float) -> dict[str, Any]:
    """Returns as soon as the host's document is newer than ``after`` (or when ``wait`` runs out)."""
    deadline = rt.clock() + min(max(wait, 0.0), MAX_WATCH_SECONDS)
    while True:
        with rt.view() as data:
            _known(data, host_id)
            if netindex.host_revision(data, host_id) > after or rt.clock() >= deadline:
                doc = host_network(data, host_id)
                return {"revision": doc.revision, "network": doc.model_dump()}
        await rt.revisions.wait_until(lambda: _newer(rt, host_id, after), max(0.0, deadline - rt.clock()))


def _newer(rt: Runtime, host_id: str, after: int) -> bool:
    """Checked (without the lock) after each applied batch: only the hosts whose document changed wake up."""
    data = rt.store.machine.data
    return host_id not in data.hosts or netindex.host_revision(data, host_id) > after


def parse_report(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """Checks the report's shape; 400 saying what is wrong."""
    vtep, backend, ports = body.get("vtep"), body.get("backend"), body.get("ports", [])
    if not isinstance(vtep, str):
        raise ServiceError(400, "bad_request", "vtep must be the host's underlay IPv4 address")
    try:
        ipaddress.IPv4Address(vtep)
    except ValueError:
        raise ServiceError(400, "bad_request", f"vtep {vtep!r} is not an IPv4 address") from None
    if not isinstance(backend, str) or not BACKEND_RE.match(backend):
        raise ServiceError(400, "bad_request", "backend must be a short name such as linuxbridge or ovs")
    if not isinstance(ports, list):
        raise ServiceError(400, "bad_request", "ports must be a list")
    items = []
    for item in ports:
        if not isinstance(item, dict) or not isinstance(item.get("port_id"), str):
            raise ServiceError(400, "bad_request", "each port is a map with port_id, state and error")
        if item.get("state") not in netindex.PORT_STATES:
            raise ServiceError(400, "bad_request", f"port state must be one of {', '.join(netindex.PORT_STATES)}")
        error = item.get("error")
        if error is not None and not isinstance(error, str):
            raise ServiceError(400, "bad_request", "a port's error is a string or null")
        items.append({"port_id": item["port_id"], "state": item["state"],
                      "error": error[:MAX_ERROR] if error else None})
    return vtep, backend, items


async def report(rt: Runtime, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
    vtep, backend, items = parse_report(body)
    args: dict[str, Any] = {"host_id": host_id}
    with rt.view() as data:
        _known(data, host_id)
        entry = data.net_hosts.get(host_id, {})
        if (entry.get("vtep"), entry.get("backend")) != (vtep, backend):
            args.update(vtep=vtep, backend=backend)
        changed = []
        for item in items:
            port = data.ports.get(item["port_id"])
            if port is not None and (port["state"], port["error"]) != (item["state"], item["error"]):
                changed.append(item)
    if changed:
        args["ports"] = changed
    if len(args) > 1:
        rc = RequestContext(request_id=f"netd-report-{uuid.uuid4().hex[:8]}", caller=SYSTEM)
        await rt.propose(rc, "net.host_report", args, action="", target=host_id, tenant_id=None)
    return {"ok": True}
