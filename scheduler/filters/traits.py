"""Required traits must all be on the host."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class TraitsFilter:
    name = "traits"

    def active(self, request: PlacementRequest) -> bool:
        return bool(request.required_traits)

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        return None if request.required_traits <= host.traits else self.name
