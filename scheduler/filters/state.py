"""Only hosts that are up, enabled and not draining take new work."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class StateFilter:
    name = "state"

    def active(self, request: PlacementRequest) -> bool:
        return True

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        if host.state == "up" and host.enabled and not host.draining:
            return None
        return self.name
