"""Hosts the request excludes, e.g. the one an instance is being moved off."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class ExcludeFilter:
    name = "exclude"

    def active(self, request: PlacementRequest) -> bool:
        return bool(request.exclude_hosts)

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        return self.name if host.id in request.exclude_hosts else None
