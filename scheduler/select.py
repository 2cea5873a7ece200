"""Host selection: filter, weigh, pick; and the explanation when no host fits.

With ``candidate_limit`` set, hosts are visited in a random order (random offset, random stride coprime to the
host count: a full cycle in O(1) setup) and the scan stops after that many feasible hosts, Nomad style, so a
placement costs about the same at 100 or 10,000 hosts while most hosts fit. The rejection counts are kept along
the way, so a scan that finds nothing has already done the full pass the explanation needs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from scheduler.filters import Filter, active_filters
from scheduler.model import HostView, PlacementRequest, WeightSettings
from scheduler.weighers import weigh

_DEFAULT_SETTINGS = WeightSettings()
# Used when the caller passes no rng; seeded from the OS once at import. Placement is not security relevant.
_RNG = random.Random()  # noqa: S311


class NoValidHost(Exception):
    """No host passed every filter. ``counts``: filter key -> hosts it rejected (each host once, by the first
    filter that rejected it); ``total``: hosts considered."""

    def __init__(self, counts: dict[str, int], total: int) -> None:
        super().__init__(counts, total)
        self.counts = counts
        self.total = total

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"no valid host among {self.total}: {parts}" if parts else f"no valid host among {self.total}"


def select_host(hosts: Sequence[HostView], request: PlacementRequest,
                settings: WeightSettings = _DEFAULT_SETTINGS, rng: random.Random | None = None) -> HostView:
    """The best host for ``request``; raises NoValidHost (with its explanation) when none fits."""
    if rng is None:
        rng = _RNG
    limit = settings.candidate_limit
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
