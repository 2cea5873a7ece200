"""The host's driver must run the requested instance kind (container or vm)."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class KindFilter:
    name = "kind"

    def active(self, request: PlacementRequest) -> bool:
        return True

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        return None if request.kind in host.kinds else self.name
