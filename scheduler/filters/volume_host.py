"""An instance with volumes runs on the volumes' host: volumes are local to the storaged that holds them."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class VolumeHostFilter:
    name = "volume_host"

    def active(self, request: PlacementRequest) -> bool:
        return request.required_host is not None

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        if request.required_host is None or host.id == request.required_host:
            return None
        return self.name
