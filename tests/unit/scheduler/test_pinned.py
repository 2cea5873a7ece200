"""The pinned shortcut: a request with ``required_host`` looks at that host alone, and explains a refusal."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import overload

import pytest

from scheduler.model import HostView, WeightSettings
from scheduler.select import NoValidHost, find_host, select_host, select_many
from tests.unit.scheduler.helpers import host, request

LIMITED = WeightSettings(candidate_limit=4)


class Counting(Sequence[HostView]):
    """Hosts that count how many of them are read (by index, by iteration or by look-up)."""

    def __init__(self, hosts: list[HostView], indexed: bool) -> None:
        self._hosts = hosts
        self._by_id = {h.id: h for h in hosts} if indexed else None
        self.reads = 0

    def __len__(self) -> int:
        return len(self._hosts)

    @overload
    def __getitem__(self, index: int) -> HostView: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[HostView]: ...

    def __getitem__(self, index: int | slice) -> HostView | Sequence[HostView]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        self.reads += 1
        return self._hosts[index]

    def __iter__(self) -> Iterator[HostView]:
        for i in range(len(self._hosts)):
            yield self[i]


class Indexed(Counting):
    def __init__(self, hosts: list[HostView]) -> None:
        super().__init__(hosts, indexed=True)

    def find(self, host_id: str) -> HostView | None:
        self.reads += 1
        assert self._by_id is not None
        return self._by_id.get(host_id)


def test_an_indexed_fleet_is_looked_up_not_walked() -> None:
    hosts = Indexed([host(f"h{i}") for i in range(1000)])
    assert select_host(hosts, request(required_host="h500"), LIMITED, random.Random(1)).id == "h500"
    assert hosts.reads == 1


def test_a_plain_fleet_stops_at_the_pinned_host() -> None:
    hosts = Counting([host(f"h{i}") for i in range(1000)], indexed=False)
    assert select_host(hosts, request(required_host="h10"), WeightSettings(), random.Random(1)).id == "h10"
    assert hosts.reads == 11


@pytest.mark.parametrize(("pinned", "expected"), [
    (host("h3", memory_mb=128), "no valid host among 1: memory 1"),
    (host("h3", state="down"), "no valid host among 1: state 1"),
    (host("h3", draining=True), "no valid host among 1: state 1"),
    (host("h3", kinds=frozenset({"vm"})), "no valid host among 1: kind 1"),
    (host("h3", zone="z9"), "no valid host among 1: zone 1"),
])
def test_a_refusal_names_the_filter_the_pinned_host_failed(pinned: HostView, expected: str) -> None:
    hosts = Indexed([host(f"h{i}") for i in range(3)] + [pinned] + [host(f"h{i}") for i in range(4, 50)])
    with pytest.raises(NoValidHost) as err:
        select_host(hosts, request(required_host="h3", zone="z1"), LIMITED, random.Random(1))
    assert str(err.value) == expected
    assert hosts.reads == 1


def test_an_excluded_pinned_host_is_refused() -> None:
    hosts = [host(f"h{i}") for i in range(5)]
    with pytest.raises(NoValidHost) as err:
        select_host(hosts, request(required_host="h2", exclude_hosts=frozenset({"h2"})), LIMITED)
    assert str(err.value) == "no valid host among 1: exclude 1"


def test_a_pinned_host_missing_from_the_fleet() -> None:
    with pytest.raises(NoValidHost) as err:
        select_host(Indexed([host(f"h{i}") for i in range(7)]), request(required_host="gone"), LIMITED)
    assert str(err.value) == "no valid host among 7: volume_host 7"
    with pytest.raises(NoValidHost) as err:
        select_host([], request(required_host="gone"))
    assert str(err.value) == "no valid host among 0"


def test_the_group_filter_still_applies_to_the_pinned_host() -> None:
    hosts = [host(f"h{i}") for i in range(5)]
    apart = request(required_host="h1", group_policy="anti-affinity", group_hosts=frozenset({"h1"}))
    with pytest.raises(NoValidHost) as err:
        select_host(hosts, apart, LIMITED)
    assert str(err.value) == "no valid host among 1: group 1"
    together = request(required_host="h1", group_policy="affinity", group_hosts=frozenset({"h4"}))
    with pytest.raises(NoValidHost):
        select_host(hosts, together, LIMITED)


@pytest.mark.parametrize("indexed", [False, True])
def test_select_many_fills_the_pinned_host_and_not_one_more(indexed: bool) -> None:
    fleet = [host(f"h{i}", vcpu=4) for i in range(200)]
    hosts: Sequence[HostView] = Indexed(fleet) if indexed else fleet
    chosen = select_many(hosts, request(vcpu=1, required_host="h42"), 4, LIMITED, random.Random(3))
    assert [h.id for h in chosen] == ["h42"] * 4
    assert chosen[-1].used["vcpu"] == 4 and fleet[42].used == {}  # claims are on copies
    with pytest.raises(NoValidHost) as err:
        select_many(hosts, request(vcpu=1, required_host="h42"), 5, LIMITED, random.Random(3))
    assert (err.value.placed, str(err.value)) == (4, "no valid host among 1: vcpu 1")


def test_find_host() -> None:
    hosts = [host("a"), host("b")]
    assert find_host(hosts, "b") is hosts[1]
    assert find_host(hosts, "c") is None
    assert find_host(Indexed(hosts), "a") is hosts[0]
