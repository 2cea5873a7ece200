"""Server groups: affinity keeps members on the hosts the group already uses, anti-affinity off them.

Affinity with no member placed yet accepts any host (the first member picks where the group lives).
"""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest


class GroupFilter:
    name = "group"

    def active(self, request: PlacementRequest) -> bool:
        return request.group_policy is not None and bool(request.group_hosts)

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        policy = request.group_policy
        if policy == "affinity":
            if request.group_hosts and host.id not in request.group_hosts:
                return self.name
        elif policy == "anti-affinity" and host.id in request.group_hosts:
            return self.name
        return None
