"""Host ports (port mappings) are unique per host: a host where another instance already publishes one of the
request's host ports cannot take it (the controller names those hosts in ``busy_port_hosts``)."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class HostPortsFilter:
    name = "host_ports"

    def active(self, request: PlacementRequest) -> bool:
        return bool(request.busy_port_hosts)

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        return self.name if host.id in request.busy_port_hosts else None
