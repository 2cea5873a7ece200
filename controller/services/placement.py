"""Glue between the replicated state and the pure scheduler: host views, requests, choosing a host.

Speed at 10,000 hosts: the scheduler visits hosts in a random order and stops after a few feasible ones
(``CANDIDATE_LIMIT``), so a placement looks at a handful of hosts, not all of them. The hosts it looks at are
turned into :class:`HostView` objects lazily (:class:`LazyViews`) and those views are cached per controller
(:class:`HostViews`). A cached view is reused only while its host record is unchanged: the cache compares the
record's scalar fields and the identity of its nested values (``used``, ``inventory``, ``kinds``, ``traits``),
which apply always replaces and never edits in place (``claims.add`` returns a new dict). The cache is read by
proposers only, under the state lock; apply never depends on it, and a stale choice could only lose its claim
in apply (a 409 the services retry), never overcommit a host.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from controller.services.errors import ServiceError
from controller.state import attachments, host_ports
from controller.state.data import StateData
from controller.state.placements import inventory_of, resources_of
from scheduler.model import HostView, PlacementRequest, WeightSettings
from scheduler.select import NoValidHost, select_host, select_many

STRATEGIES = ("spread", "pack")
CANDIDATE_LIMIT = 8
_rng = random.Random()  # noqa: S311 - spreading load, not security


Planned = dict[str, dict[str, int]]  # host id -> resources already promised by the plan being made


def _with_planned(view: HostView, extra: dict[str, int] | None) -> HostView:
    if not extra:
        return view
    used = view.used
    merged = {rc: used.get(rc, 0) + extra.get(rc, 0) for rc in {*used, *extra}}
    return dataclasses.replace(view, used=merged)


def _build(host: dict[str, Any]) -> HostView:
    return HostView(id=host["id"], zone=host["zone"], state=host["state"], enabled=host["enabled"],
                    draining=host["draining"], kinds=frozenset(host["kinds"]), traits=frozenset(host["traits"]),
                    inventory=inventory_of(host), used=host["used"], instance_count=host["instance_count"])


def host_view(host: dict[str, Any], planned: Planned | None = None) -> HostView:
    return _with_planned(_build(host), (planned or {}).get(host["id"]))


def _scalars(host: dict[str, Any]) -> tuple[Any, ...]:
    return host["state"], host["enabled"], host["draining"], host["zone"], host["instance_count"]


class HostViews:
    """Scheduler views of host records, rebuilt only for hosts whose record changed (see the module doc)."""

    def __init__(self) -> None:
        # host id -> (record, scalar fields, used, inventory, kinds, traits, view); the nested values themselves
        # are kept (not their ids), so an id can never be reused while it is cached
        self._entries: dict[str, tuple[Any, ...]] = {}
        self.built = 0  # views built (not reused): for tests and profiling
        # The host records in a list (the scheduler's random walk indexes it), kept between placements: a copy of
        # 10,000 records per placement cost more than the walk. Rebuilt when the host table is another one, when
        # its size changed, or when a walk met a record that is no longer in it (``stale``).
        self._records: list[dict[str, Any]] = []
        self._records_of: dict[str, dict[str, Any]] | None = None
        self.stale = False

    def view(self, host: dict[str, Any]) -> HostView:
        e = self._entries.get(host["id"])
        if (e is not None and e[0] is host and e[2] is host["used"] and e[3] is host["inventory"]
                and e[4] is host["kinds"] and e[5] is host["traits"] and e[1] == _scalars(host)):
            view: HostView = e[6]
            return view
        view = _build(host)
        self.built += 1
        self._entries[host["id"]] = (host, _scalars(host), host["used"], host["inventory"], host["kinds"],
                                     host["traits"], view)
        return view

    def sequence(self, data: StateData, planned: Planned | None = None) -> LazyViews:
        """All hosts, as views built on first access."""
        hosts = data.hosts
        if self.stale or self._records_of is not hosts or len(self._records) != len(hosts):
            self._records, self._records_of, self.stale = list(hosts.values()), hosts, False
            if len(self._entries) > 2 * len(hosts) + 1000:  # forget deleted hosts now and then
                self._entries = {k: v for k, v in self._entries.items() if k in hosts}
        return LazyViews(self._records, self, planned, hosts)


class LazyViews(Sequence[HostView]):
    """A sequence of host views that builds (or takes from the cache) only the views it is asked for."""

    def __init__(self, hosts: list[dict[str, Any]], cache: HostViews, planned: Planned | None,
                 by_id: Mapping[str, dict[str, Any]] | None = None) -> None:
        self._hosts = hosts
        self._cache = cache
        self._planned = planned  # may grow while this sequence is used (choose_many)
        self._by_id = by_id if by_id is not None else {h["id"]: h for h in hosts}

    def __len__(self) -> int:
        return len(self._hosts)

    @overload
    def __getitem__(self, index: int) -> HostView: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[HostView]: ...

    def __getitem__(self, index: int | slice) -> HostView | Sequence[HostView]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._hosts)))]
        return self._view(self._hosts[index])

    def find(self, host_id: str) -> HostView | None:
        """One host by id (a pinned placement looks at that host alone: scheduler.model.HostIndex)."""
        host = self._by_id.get(host_id)
        return None if host is None else self._view(host)

    def _view(self, host: dict[str, Any]) -> HostView:
        if self._by_id.get(host["id"]) is not host:  # deleted since the host list was made: it takes nothing
            self._cache.stale = True
            return dataclasses.replace(_build(host), state="deleted")
        view = self._cache.view(host)
        if self._planned:
            return _with_planned(view, self._planned.get(host["id"]))
        return view

    def __iter__(self) -> Iterator[HostView]:
        for i in range(len(self._hosts)):
            yield self[i]


def plan(planned: Planned, host_id: str, instance: dict[str, Any]) -> None:
    used = planned.setdefault(host_id, {})
    for rc, amount in resources_of(instance).items():
        used[rc] = used.get(rc, 0) + amount


def settings(data: StateData) -> WeightSettings:
    return WeightSettings(strategy=str(data.meta.get("placement_strategy", "spread")),
                          candidate_limit=CANDIDATE_LIMIT)


def request_for(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset()) -> PlacementRequest:
    policy = None
    group_hosts: frozenset[str] = frozenset()
    group_name = instance.get("group")
    if group_name:
        group = data.server_groups.get(instance["tenant_id"], {}).get(group_name)
        if group is not None:
            policy = group["policy"]
            group_hosts = frozenset(
                data.instances[m]["host_id"] for m in group["members"]
                if m != instance.get("id") and m in data.instances and data.instances[m].get("host_id"))
    return PlacementRequest(resources=resources_of(instance), kind=instance["kind"], zone=instance.get("zone"),
                            required_traits=frozenset(instance.get("required_traits") or ()),
                            group_policy=policy, group_hosts=group_hosts, exclude_hosts=exclude,
                            required_host=instance.get("required_host") or attachments.required_host(
                                data, instance.get("id") or ""),
                            busy_port_hosts=host_ports.busy_hosts(data, instance))


def choose(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset(),
           planned: Planned | None = None, views: HostViews | None = None) -> str:
    """The host for ``instance``; 409 no_valid_host explaining, per filter, why none fits.

    ``views``: the controller's cache (``Runtime.host_views``); without it, views are built for this call only.
    """
    hosts = (views or HostViews()).sequence(data, planned)
    try:
        return select_host(hosts, request_for(data, instance, exclude), settings(data), _rng).id
    except NoValidHost as exc:
        raise ServiceError(409, "no_valid_host", str(exc) + _explain(data, instance, exc)) from None


def _explain(data: StateData, instance: dict[str, Any], exc: NoValidHost) -> str:
    """What the ``host_ports`` count means, with the ports (the other filters' keys speak for themselves)."""
    if not exc.counts.get("host_ports"):
        return ""
    keys = sorted(host_ports.keys_of(host_ports.published(data, instance)), key=lambda k: (k[1], k[0]))
    listed = ", ".join(f"{number}/{protocol}" for protocol, number in keys)
    if len(keys) == 1:
        return f" (host port {listed} is already published on those hosts)"
    return f" (one of host ports {listed} is already published on each of those hosts)"


def try_choose(data: StateData, instance: dict[str, Any], exclude: frozenset[str] = frozenset(),
               planned: Planned | None = None, views: HostViews | None = None) -> str | None:
    try:
        return choose(data, instance, exclude, planned, views)
    except ServiceError:
        return None


def choose_many(data: StateData, instance: dict[str, Any], names: Sequence[str],
                views: HostViews | None = None) -> list[str]:
    """Hosts for ``len(names)`` instances like ``instance`` (a batch), chosen one after the other: each choice
    counts the claims (and server-group members) of the ones before, so one plan never overfills a host.
    409 no_valid_host names the first instance that finds no host."""
    hosts = (views or HostViews()).sequence(data)
    try:
        chosen = select_many(hosts, request_for(data, instance), len(names), settings(data), _rng)
    except NoValidHost as exc:
        n = exc.placed + 1
        raise ServiceError(409, "no_valid_host", f"no host for instance {n} of {len(names)} ({names[exc.placed]}): "
                                                 f"{exc}{_explain(data, instance, exc)}") from None
    return [h.id for h in chosen]
