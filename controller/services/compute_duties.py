"""Leader duties for compute: hosts that stopped heartbeating, pending instances, draining hosts.

Each pass returns a readable reason, or None when there was nothing to do.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from controller.services import migrations, placement
from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime

log = logging.getLogger(__name__)
RETRY_PENDING_SECONDS = 2.0
# Hosts that must keep heartbeating. A "new" host (joined, never heartbeated) runs nothing: it just waits.
LIVE_STATES = frozenset({"up", "fencing"})


class ComputeDuties:
    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self._rt = rt
        self._clock = clock  # for the pending retry delay
        self._leading_since_term: object = None
        self._pending_tried: dict[str, float] = {}

    def _rc(self, what: str) -> RequestContext:
        return RequestContext(request_id=f"duty-{what}-{uuid.uuid4().hex[:8]}", caller=SYSTEM)

    async def run_once(self, leader_term: object) -> str | None:
        if leader_term != self._leading_since_term:
            self._leading_since_term = leader_term
            self._rt.liveness.new_epoch()
            log.info("leading in term %s: every host gets a fresh heartbeat grace period", leader_term)
        return await self._hosts_down() or await self._drain() or await self._place_pending()

    async def _hosts_down(self) -> str | None:
        rt = self._rt
        grace = rt.compute.host_grace
        with rt.view() as data:
            silent = [(h["id"], h["name"], h["state"], seconds)
                      for h, seconds in rt.liveness.silent_longer_than(grace, data.hosts.values(), LIVE_STATES)]
        for host_id, name, state, seconds in silent:
            moves = self._plan_evacuation(host_id)
            out = await rt.propose(self._rc("host-down"), "host.set_state",
                                   {"host_id": host_id, "state": "down", "expect": state, "moves": moves,
                                    "reason": f"no heartbeat for {seconds:.0f}s (grace {grace:.0f}s)"},
                                   action="host.down", target=name, tenant_id=None)
            moved = out.result["moved"]
            placed = sum(1 for h in moved.values() if h)
            waiting = sum(1 for i, h in moved.items() if not h and i in moves)
            kept_off = len(moved) - placed - waiting
            return (f"host {name} down after {seconds:.0f}s without heartbeat; {placed} instance(s) rescheduled, "
                    f"{waiting} waiting for a host, {kept_off} not restarted (stopped or restart policy never)")
        return None

    def _plan_evacuation(self, host_id: str) -> dict[str, str | None]:
        """Chooses new hosts one by one, counting earlier choices so one plan does not overfill a host."""
        moves: dict[str, str | None] = {}
        with self._rt.view() as data:
            planned: placement.Planned = {}
            for instance in data.instances.values():
                if (instance.get("host_id") != host_id or instance["restart_policy"] == "never"
                        or instance["desired"] != "running"):
                    continue
                target = placement.try_choose(data, instance, frozenset({host_id}), planned, self._rt.host_views)
                moves[instance["id"]] = target
                if target:
                    placement.plan(planned, target, instance)
        return moves

    async def _drain(self) -> str | None:
        """Moves one instance off a draining host per pass: live (see services/migrations.py) where both hosts
        can, else cold (the agent there deletes the old copy). Ends live migrations that took too long."""
        rt = self._rt
        now = rt.clock()
        timed_out: tuple[dict[str, Any], str] | None = None
        with rt.view() as data:
            draining = {h["id"] for h in data.hosts.values() if h["draining"]}
            if not draining:
                return None
            for instance in data.instances.values():
                if instance.get("host_id") in draining and instance["desired"] != "deleted":
                    if instance.get("migration"):
                        if migrations.expired(data, instance, now):
                            timed_out = (dict(instance), instance["migration"]["id"])
                            break
                        continue
                    target = placement.try_choose(data, instance, frozenset(draining), views=rt.host_views)
                    if target is None:
                        continue
                    live = migrations.can_go_live(data, instance, target)
                    args = {"id": instance["id"], "generation": instance["generation"], "host_id": target,
                            "why": f"moved off draining host {data.hosts[instance['host_id']]['name']}"}
                    name, tenant_id = instance["name"], instance["tenant_id"]
                    break
            else:
                return None
        if timed_out is not None:
            outcome = await migrations.finish(rt, timed_out[0], timed_out[1], False, "timed out")
            return f"live migration of {timed_out[0]['name']} timed out: {outcome}"
        if live:
            try:
                await rt.propose(self._rc("migrate"), "migration.start", {**args, "migration_id": migrations.new_id()},
                                 action="instance.migrate", target=name, tenant_id=tenant_id)
                return f"live-migrating {name} off a draining host"
            except ServiceError as err:
                log.info("live migration of %s refused (%s); moving it cold", name, err.message)
        try:
            await rt.propose(self._rc("drain"), "instance.place", args, action="instance.move", target=name,
                             tenant_id=tenant_id)
        except ServiceError as err:
            return f"drain move of {name} refused, will retry: {err.message}"
        return f"moved {name} off a draining host"

    async def _place_pending(self) -> str | None:
        """Tries to place each waiting instance (at most every RETRY_PENDING_SECONDS). Reads the index of
        unplaced instances, not every instance; forgets the retry times of those no longer waiting."""
        rt = self._rt
        now = self._clock()
        with rt.view() as data:
            waiting = [i for i in map(data.instances.get, data.unplaced_instances)
                       if i is not None and i["status"] == "pending" and i["desired"] == "running"
                       and i.get("host_id") is None]
            tried = self._pending_tried
            self._pending_tried = {i["id"]: tried[i["id"]] for i in waiting if i["id"] in tried}
            pending = [i for i in waiting if now - tried.get(i["id"], 0.0) > RETRY_PENDING_SECONDS]
            plans = [(i, placement.try_choose(data, i, views=rt.host_views)) for i in pending]
        for instance, target in plans:
            self._pending_tried[instance["id"]] = now
            if target is None:
                continue
            try:
                await rt.propose(self._rc("place"), "instance.place",
                                 {"id": instance["id"], "generation": instance["generation"], "host_id": target,
                                  "why": "rescheduled"},
                                 action="instance.place", target=instance["name"], tenant_id=instance["tenant_id"])
            except ServiceError as err:
                return f"placing pending {instance['name']} refused, will retry: {err.message}"
            return f"placed pending instance {instance['name']}"
        return None

