"""Availability zone: any when the request names none."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class ZoneFilter:
    name = "zone"

    def active(self, request: PlacementRequest) -> bool:
        return request.zone is not None

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        if request.zone is None or host.zone == request.zone:
            return None
        return self.name
