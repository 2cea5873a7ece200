from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest

from scheduler.claims import add, shortfall
from scheduler.model import HostView, WeightSettings
from scheduler.select import NoValidHost, explain, select_host, select_many
from scheduler.weighers import normalize, weigh
from tests.unit.scheduler.helpers import host, request


def test_message_format_exact() -> None:
    exc = NoValidHost({"zone": 800, "memory": 9200}, 10000)
    assert str(exc) == "no valid host among 10000: memory 9200, zone 800"
    assert str(NoValidHost({"zone": 3, "kind": 3, "vcpu": 4}, 10)) == "no valid host among 10: vcpu 4, kind 3, zone 3"
    assert str(NoValidHost({}, 0)) == "no valid host among 0"


def test_no_valid_host_pickles() -> None:
    exc = pickle.loads(pickle.dumps(NoValidHost({"zone": 2}, 2)))
    assert exc.counts == {"zone": 2} and exc.total == 2 and str(exc) == "no valid host among 2: zone 2"


def _mixed_hosts() -> list[HostView]:
    return [
        host("down", state="down", zone="b"),  # counted by state, not zone: first filter wins
        host("other-zone", zone="b"),
        host("full", used={"memory_mb": 8192}),
        host("no-vm", kinds=frozenset({"container"})),
        host("busy-cpu", used={"vcpu": 8}),
    ]


@pytest.mark.parametrize("limit", [None, 1, 8])
def test_select_raises_with_counts(limit: int | None) -> None:
    with pytest.raises(NoValidHost) as info:
        select_host(_mixed_hosts(), request(kind="vm", zone="z1"), WeightSettings(candidate_limit=limit),
                    random.Random(1))
    assert info.value.counts == {"state": 1, "zone": 1, "memory": 1, "kind": 1, "vcpu": 1}
    assert info.value.total == 5
    assert str(info.value) == "no valid host among 5: kind 1, memory 1, state 1, vcpu 1, zone 1"


def test_explain_counts_each_host_once_and_skips_fitting() -> None:
    hosts = [*_mixed_hosts(), host("ok")]
    exc = explain(hosts, request(kind="vm", zone="z1"))
    assert exc.total == 6
    assert sum(exc.counts.values()) == 5


def test_empty_host_list() -> None:
    with pytest.raises(NoValidHost, match="among 0"):
        select_host([], request(), WeightSettings(candidate_limit=8))


def test_normalize() -> None:
    assert normalize([]) == []
    assert normalize([5.0, 5.0]) == [0.0, 0.0]
    assert normalize([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert normalize([-10.0, 0.0]) == [0.0, 1.0]


def test_weigh_normalized_and_summed() -> None:
    hosts = [host("a", used={"vcpu": 0, "memory_mb": 0}, instance_count=4),
             host("b", used={"vcpu": 4, "memory_mb": 4096}, instance_count=0),
             host("c", used={"vcpu": 8, "memory_mb": 8192}, instance_count=2)]
    s = WeightSettings(resource_multiplier=1.0, instance_count_multiplier=2.0)
    # resource: free fractions 1, .5, 0 -> 1, .5, 0; instances: -4, 0, -2 -> 0, 1, .5 (x2)
    assert weigh(hosts, request(), s) == pytest.approx([1.0, 2.5, 1.0])
    # Scale of raw values does not matter, only their spread across the candidates.
    big = [host("a", memory_mb=1_000_000), host("b", memory_mb=1_000_100)]
    assert weigh(big, request(), WeightSettings(resource_multiplier=0.0, free_memory_multiplier=3.0)) == [0.0, 3.0]


def test_pack_and_spread_choose_different_hosts() -> None:
    hosts = [host("empty"), host("half", used={"vcpu": 4, "memory_mb": 4096}),
             host("nearly-full", used={"vcpu": 7, "memory_mb": 7000})]
    assert select_host(hosts, request(), WeightSettings(strategy="spread")).id == "empty"
    assert select_host(hosts, request(), WeightSettings(strategy="pack")).id == "nearly-full"


def test_free_memory_weigher_prefers_big_host() -> None:
    hosts = [host("small", memory_mb=4096), host("big", memory_mb=65536, used={"memory_mb": 16384})]
    s = WeightSettings(resource_multiplier=0.0, free_memory_multiplier=1.0)
    assert select_host(hosts, request(), s).id == "big"
    # Spread by fraction prefers the small empty host.
    assert select_host(hosts, request(), WeightSettings()).id == "small"


def test_instance_count_weigher() -> None:
    hosts = [host("many", instance_count=10), host("few", instance_count=1)]
    s = WeightSettings(resource_multiplier=0.0, instance_count_multiplier=1.0)
    assert select_host(hosts, request(), s).id == "few"
    assert select_host(hosts, request(), WeightSettings(resource_multiplier=0.0,
                                                         instance_count_multiplier=-1.0)).id == "many"


def test_affinity_places_with_group() -> None:
    hosts = [host(f"h{i}") for i in range(10)]
    req = request(group_policy="affinity", group_hosts=frozenset({"h7"}))
    for seed in range(20):
        assert select_host(hosts, req, WeightSettings(candidate_limit=3), random.Random(seed)).id == "h7"


def test_affinity_group_host_full_explains_all_hosts() -> None:
    hosts = [host("h0", state="down"), host("h1"), host("h2", used={"memory_mb": 8192})]
    req = request(group_policy="affinity", group_hosts=frozenset({"h2"}))
    for limit in (None, 8):
        with pytest.raises(NoValidHost) as info:
            select_host(hosts, req, WeightSettings(candidate_limit=limit))
        assert str(info.value) == "no valid host among 3: group 1, memory 1, state 1"


def test_anti_affinity_spreads_group() -> None:
    hosts = [host(f"h{i}") for i in range(4)]
    used: set[str] = set()
    for _ in range(4):
        req = request(group_policy="anti-affinity", group_hosts=frozenset(used))
        chosen = select_host(hosts, req, WeightSettings(), random.Random(0))
        assert chosen.id not in used
        used.add(chosen.id)
    with pytest.raises(NoValidHost, match="group 4"):
        select_host(hosts, request(group_policy="anti-affinity", group_hosts=frozenset(used)))


def test_exclude_moves_off_host() -> None:
    hosts = [host("old"), host("new", used={"vcpu": 7})]
    assert select_host(hosts, request(exclude_hosts=frozenset({"old"}))).id == "new"


def test_seeded_rng_is_deterministic() -> None:
    hosts = [host(f"h{i}", used={"vcpu": i % 3}) for i in range(200)]
    for limit in (None, 8):
        s = WeightSettings(candidate_limit=limit, resource_multiplier=0.0)  # all ties: the rng decides
        a = [select_host(hosts, request(), s, random.Random(42)).id for _ in range(5)]
        b = [select_host(hosts, request(), s, random.Random(42)).id for _ in range(5)]
        assert a == b
        rng1, rng2 = random.Random(7), random.Random(7)
        assert [select_host(hosts, request(), s, rng1).id for _ in range(30)] == \
            [select_host(hosts, request(), s, rng2).id for _ in range(30)]
    # Ties really are broken at random, not by position.
    rng = random.Random(3)
    picks = {select_host(hosts, request(), WeightSettings(resource_multiplier=0.0), rng).id for _ in range(50)}
    assert len(picks) > 10


def test_candidate_limit_finds_rare_fitting_host() -> None:
    hosts = [host(f"h{i}", used={"vcpu": 8}) for i in range(500)]
    hosts[321] = host("free")
    for seed in range(10):
        assert select_host(hosts, request(), WeightSettings(candidate_limit=8), random.Random(seed)).id == "free"


def test_candidate_limit_visits_every_host_once() -> None:
    from scheduler.select import _random_walk

    for n in (1, 2, 3, 4, 10, 12, 97, 1000):
        for seed in range(5):
            start, stride = _random_walk(n, random.Random(seed))
            assert sorted((start + k * stride) % n for k in range(n)) == list(range(n))


def test_candidate_limit_weighs_only_candidates() -> None:
    hosts = [host(f"h{i}", used={"vcpu": i % 8}) for i in range(1000)]
    picks = [select_host(hosts, request(), WeightSettings(candidate_limit=8), random.Random(s)).id
             for s in range(50)]
    assert len(set(picks)) > 5  # not always the single global best
    assert all(int(p[1:]) % 8 <= 3 for p in picks)  # but the best of a few: in the emptier half


@pytest.mark.parametrize("limit", [None, 8])
@pytest.mark.parametrize("strategy", ["spread", "pack"])
def test_random_placements_never_exceed_capacity(limit: int | None, strategy: str) -> None:
    rng = random.Random(1234)
    hosts = [host(f"h{i}", zone=rng.choice(["a", "b"]), vcpu=rng.choice([2, 4]), memory_mb=rng.choice([1024, 2048]),
                  disk_gb=rng.choice([5, 10]), kinds=frozenset(rng.sample(["container", "vm"], rng.choice([1, 2]))))
             for i in range(12)]
    settings = WeightSettings(strategy=strategy, candidate_limit=limit, instance_count_multiplier=0.5)
    placed = refused = 0
    for _ in range(200):
        req = request(vcpu=rng.randint(1, 2), memory_mb=rng.choice([128, 256, 512]), disk_gb=rng.randint(0, 2),
                      kind=rng.choice(["container", "vm"]), zone=rng.choice([None, "a", "b"]))
        try:
            chosen = select_host(hosts, req, settings, rng)
        except NoValidHost as exc:
            refused += 1
            assert sum(exc.counts.values()) == exc.total == len(hosts)
            continue
        assert shortfall(chosen.inventory, chosen.used, req.resources) is None
        assert chosen.kinds >= {req.kind} and (req.zone is None or chosen.zone == req.zone)
        chosen.used = add(chosen.used, req.resources)
        chosen.instance_count += 1
        placed += 1
        for h in hosts:
            for rc, inv in h.inventory.items():
                assert h.used.get(rc, 0) <= inv.capacity
    assert placed > 20 and refused > 20  # tight: the cluster fills up


# -- select_many: a batch of one request ---------------------------------------------------------------------
def _fleet(n: int, vcpu: int = 4, **kw: object) -> list[HostView]:
    return [host(f"h{i:04d}", vcpu=vcpu, memory_mb=1 << 20, disk_gb=1 << 20, **kw) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["spread", "pack"])
@pytest.mark.parametrize("n", [3, 20, 300])
def test_select_many_fills_every_place_and_not_one_more(strategy: str, n: int) -> None:
    """Hosts leave the window to let fresh ones in; none is lost: the batch can use every place there is."""
    hosts = _fleet(n)
    settings = WeightSettings(strategy=strategy, candidate_limit=8)
    chosen = select_many(hosts, request(vcpu=1), 4 * n, settings, random.Random(n))
    assert sorted(Counter(h.id for h in chosen).values()) == [4] * n
    assert all(h.used == {} and h.instance_count == 0 for h in hosts)  # the hosts given are not modified
    with pytest.raises(NoValidHost) as info:
        select_many(hosts, request(vcpu=1), 4 * n + 1, settings, random.Random(n))
    assert (info.value.placed, info.value.counts, info.value.total) == (4 * n, {"vcpu": n}, n)


def test_select_many_spreads_a_batch_over_the_fleet_and_pack_fills_hosts() -> None:
    hosts = _fleet(1000, vcpu=64)
    spread = select_many(hosts, request(vcpu=1), 100, WeightSettings(candidate_limit=8), random.Random(1))
    assert len({h.id for h in spread}) > 50
    packed = select_many(hosts, request(vcpu=1), 100, WeightSettings(strategy="pack", candidate_limit=8),
                         random.Random(1))
    assert len({h.id for h in packed}) <= 3


def test_select_many_respects_filters_and_capacity_on_a_mixed_fleet() -> None:
    rng = random.Random(7)
    hosts = [host(f"h{i}", zone=rng.choice(["a", "b"]), vcpu=rng.choice([1, 2, 4]), memory_mb=rng.choice([512, 1024]),
                  state=rng.choice(["up", "up", "up", "down"]), kinds=frozenset(rng.sample(["container", "vm"], 1)))
             for i in range(200)]
    req = request(vcpu=1, memory_mb=256, kind="vm", zone="a")
    settings = WeightSettings(candidate_limit=8)
    room = sum(min(h.capacity("vcpu"), h.capacity("memory_mb") // 256) for h in hosts
               if h.state == "up" and h.zone == "a" and "vm" in h.kinds)
    chosen = select_many(hosts, req, room, settings, rng)
    assert all(h.zone == "a" and "vm" in h.kinds and h.state == "up" for h in chosen)
    final = {h.id: h for h in chosen}  # the last view of each host carries all of the batch's claims on it
    for h in final.values():
        assert shortfall(h.inventory, h.used, {}) is None
        assert h.used["vcpu"] <= h.capacity("vcpu") and h.used["memory_mb"] <= h.capacity("memory_mb")
    with pytest.raises(NoValidHost):
        select_many(hosts, req, room + 1, settings, rng)


def test_select_many_without_a_limit_or_with_a_group_is_the_loop_of_select_host() -> None:
    hosts = _fleet(5)
    chosen = select_many(hosts, request(vcpu=1), 10, WeightSettings(candidate_limit=None), random.Random(3))
    assert sorted(Counter(h.id for h in chosen).values()) == [2] * 5  # spread: always the emptiest
    apart = select_many(hosts, request(vcpu=1, group_policy="anti-affinity"), 5, WeightSettings(candidate_limit=8))
    assert len({h.id for h in apart}) == 5
    with pytest.raises(NoValidHost) as info:
        select_many(hosts, request(vcpu=1, group_policy="anti-affinity"), 6, WeightSettings(candidate_limit=8))
    assert info.value.placed == 5 and info.value.counts == {"group": 5}
    together = select_many(hosts, request(vcpu=1, group_policy="affinity"), 4, WeightSettings(candidate_limit=8))
    assert len({h.id for h in together}) == 1
