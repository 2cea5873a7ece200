"""Host selection: filter, weigh, pick; and the explanation when no host fits.

With ``candidate_limit`` set, hosts are visited in a random order (random offset, random stride coprime to the
host count: a full cycle in O(1) setup) and the scan stops after that many feasible hosts, Nomad style, so a
placement costs about the same at 100 or 10,000 hosts while most hosts fit. The rejection counts are kept along
the way, so a scan that finds nothing has already done the full pass the explanation needs.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Iterator, Sequence

from scheduler.claims import add
from scheduler.filters import Filter, active_filters, first_rejection
from scheduler.model import HostIndex, HostView, PlacementRequest, WeightSettings
from scheduler.weighers import WEIGHERS, normalize, weigh

_DEFAULT_SETTINGS = WeightSettings()
# Used when the caller passes no rng; seeded from the OS once at import. Placement is not security relevant.
_RNG = random.Random()  # noqa: S311


class NoValidHost(Exception):
    """No host passed every filter. ``counts``: filter key -> hosts it rejected (each host once, by the first
    filter that rejected it); ``total``: hosts considered; ``placed``: for ``select_many``, how many of the
    requested placements were made before this one failed."""

    def __init__(self, counts: dict[str, int], total: int, placed: int = 0) -> None:
        super().__init__(counts, total, placed)
        self.counts = counts
        self.total = total
        self.placed = placed

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"no valid host among {self.total}: {parts}" if parts else f"no valid host among {self.total}"


def select_host(hosts: Sequence[HostView], request: PlacementRequest,
                settings: WeightSettings = _DEFAULT_SETTINGS, rng: random.Random | None = None) -> HostView:
    """The best host for ``request``; raises NoValidHost (with its explanation) when none fits."""
    if rng is None:
        rng = _RNG
    limit = settings.candidate_limit
    if request.required_host is not None:
        return _select_pinned(hosts, request, request.required_host)
    pool = hosts
    if request.group_policy == "affinity" and request.group_hosts:
        # Only the group's hosts can pass: look at those alone instead of walking every host to find them.
        pool = [h for h in hosts if h.id in request.group_hosts]
    n = len(pool)
    start, stride = (0, 1) if limit is None else _random_walk(n, rng)
    feasible, counts = _scan(pool, start, stride, request, active_filters(request), limit)
    if not feasible:
        raise NoValidHost(counts, n) if pool is hosts else explain(hosts, request)
    if len(feasible) == 1:
        return feasible[0]
    weights = weigh(feasible, request, settings)
    top = max(weights)
    best = [h for h, w in zip(feasible, weights, strict=True) if w == top]
    return best[0] if len(best) == 1 else rng.choice(best)


def _select_pinned(hosts: Sequence[HostView], request: PlacementRequest, host_id: str) -> HostView:
    """The one host a pinned request may take (its volumes' host), checked by every filter: the other hosts are
    not looked at. The refusal names that host's failed filter ("no valid host among 1: memory 1"), or
    ``volume_host`` for every host when the pinned host is not among ``hosts``."""
    host = find_host(hosts, host_id)
    if host is None:
        raise NoValidHost({"volume_host": len(hosts)} if hosts else {}, len(hosts))
    key = first_rejection(host, request, active_filters(request))
    if key is not None:
        raise NoValidHost({key: 1}, 1)
    return host


def find_host(hosts: Sequence[HostView], host_id: str) -> HostView | None:
    """The view of ``host_id``: looked up when ``hosts`` is a :class:`HostIndex`, else found by a pass over ids."""
    if isinstance(hosts, HostIndex):
        return hosts.find(host_id)
    return next((h for h in hosts if h.id == host_id), None)


def select_many(hosts: Sequence[HostView], request: PlacementRequest, count: int,
                settings: WeightSettings = _DEFAULT_SETTINGS, rng: random.Random | None = None) -> list[HostView]:
    """``count`` placements of the same request, each counting the claims of the ones before; the hosts chosen, in
    order (a host appears once per placement on it). ``hosts`` are not modified.

    Like ``count`` calls of :func:`select_host` with each choice claimed in between, but cheaper: one random walk
    over the hosts feeds a window of ``candidate_limit`` feasible candidates, and each placement takes the best
    of the window. The host just chosen stays in it (with its new claim, as the newest candidate: pack keeps
    filling it), and the oldest candidate makes room for one fresh host from the walk, so the batch spreads over
    the fleet like separate placements would (those that leave the window are looked at again once the walk
    has visited every host). A placement thus costs one weighing of the window and a look at one or two hosts,
    not a scan of several. Without a candidate limit, for a server-group policy (whose members must see each
    other's choices) or for a pinned request (one look-up each), it is exactly the loop of :func:`select_host`
    calls.

    Raises NoValidHost (``placed``: how many were placed before) when one of them finds no host.
    """
    if rng is None:
        rng = _RNG
    limit = settings.candidate_limit
    claimed: dict[str, HostView] = {}  # host id -> its view with this call's claims
    view = _Claimed(hosts, claimed)
    chosen: list[HostView] = []
    if limit is None or request.group_policy is not None or request.required_host is not None:
        for placed in range(count):
            req = request
            if request.group_policy is not None:
                req = dataclasses.replace(request, group_hosts=request.group_hosts | {h.id for h in chosen})
            try:
                host = select_host(view, req, settings, rng)
            except NoValidHost as exc:
                raise NoValidHost(exc.counts, exc.total, placed) from None
            chosen.append(_claim(claimed, host, request))
        return chosen
    filters = active_filters(request)

    def fits(host: HostView) -> bool:
        return all(f.reject(host, request) is None for f in filters)

    n = len(hosts)
    start, stride = _random_walk(n, rng)
    walked = 0
    later: deque[HostView] = deque()  # feasible hosts that left the window for a fresh one: looked at again last

    def fresh() -> HostView | None:
        nonlocal start, walked
        while walked < n:
            host = view[start]
            walked += 1
            start += stride
            if start >= n:
                start -= n
            if fits(host):
                return host
        while later:
            host = later.popleft()
            host = claimed.get(host.id, host)
            if fits(host):
                return host
        return None

    # The weighers' raw values of each candidate, kept next to it: only the host just claimed changes, so only
    # its values are computed again (the normalization across the window is redone each time, as weigh() does).
    active = [(w, m) for w in WEIGHERS if (m := w.multiplier(settings)) != 0.0]
    window: list[HostView] = []  # oldest first
    raws: list[tuple[float, ...]] = []

    def add(host: HostView) -> None:
        window.append(host)
        raws.append(tuple(w.raw(host, request) for w, _ in active))

    def remove(i: int) -> HostView:
        del raws[i]
        return window.pop(i)

    for placed in range(count):
        while len(window) < limit and (candidate := fresh()) is not None:
            add(candidate)
        if not window:
            why = explain(view, request)
            raise NoValidHost(why.counts, why.total, placed)
        host = _claim(claimed, remove(_best_of(raws, [m for _, m in active], rng)), request)
        chosen.append(host)
        if fits(host):
            add(host)  # it stays a candidate (as the newest): pack keeps filling it
        if len(window) >= limit and walked < n:  # spread over the fleet: the oldest candidate makes room
            later.append(remove(0))
    return chosen


class _Claimed(Sequence[HostView]):
    """``hosts`` with the views of the hosts claimed on so far replaced."""

    def __init__(self, hosts: Sequence[HostView], claimed: dict[str, HostView]) -> None:
        self._hosts = hosts
        self._claimed = claimed

    def __len__(self) -> int:
        return len(self._hosts)

    def __getitem__(self, index: int) -> HostView:  # type: ignore[override]
        host = self._hosts[index]
        return self._claimed.get(host.id, host) if self._claimed else host

    def __iter__(self) -> Iterator[HostView]:
        for i in range(len(self._hosts)):
            yield self[i]

    def find(self, host_id: str) -> HostView | None:
        host = self._claimed.get(host_id)
        return host if host is not None else find_host(self._hosts, host_id)


def _claim(claimed: dict[str, HostView], host: HostView, request: PlacementRequest) -> HostView:
    new = dataclasses.replace(host, used=add(host.used, request.resources), instance_count=host.instance_count + 1)
    claimed[host.id] = new
    return new


def _best_of(raws: list[tuple[float, ...]], multipliers: list[float], rng: random.Random) -> int:
    """The index of the best candidate (ties: a random one), from each candidate's raw weigher values."""
    if len(raws) == 1:
        return 0
    totals = [0.0] * len(raws)
    for j, m in enumerate(multipliers):
        for i, v in enumerate(normalize([r[j] for r in raws])):
            totals[i] += m * v
    top = max(totals)
    best = [i for i, t in enumerate(totals) if t == top]
    return best[0] if len(best) == 1 else rng.choice(best)


def explain(hosts: Sequence[HostView], request: PlacementRequest) -> NoValidHost:
    """Full pass over ``hosts``: why each one is rejected (hosts that fit are not counted)."""
    _, counts = _scan(hosts, 0, 1, request, active_filters(request), None)
    return NoValidHost(counts, len(hosts))


def _scan(hosts: Sequence[HostView], start: int, stride: int, request: PlacementRequest,
          filters: tuple[Filter, ...], limit: int | None) -> tuple[list[HostView], dict[str, int]]:
    """Visits hosts start, start+stride, ... (mod n), each once when gcd(stride, n) == 1, until ``limit`` fit."""
    feasible: list[HostView] = []
    counts: dict[str, int] = {}
    n = len(hosts)
    i = start
    for _ in range(n):
        host = hosts[i]
        i += stride
        if i >= n:
            i -= n
        for f in filters:  # inlined first_rejection: this is the hot loop
            key = f.reject(host, request)
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
                break
        else:
            feasible.append(host)
            if limit is not None and len(feasible) >= limit:
                break
    return feasible, counts


def _random_walk(n: int, rng: random.Random) -> tuple[int, int]:
    """A random start and a random stride coprime to ``n``: together a visit of every index once."""
    if n <= 2:
        return (rng.randrange(n) if n else 0), 1
    stride = rng.randrange(1, n)
    while math.gcd(stride, n) != 1:
        stride = rng.randrange(1, n)
    return rng.randrange(n), stride
