"""The volume-host filter: an instance with volumes is placed on its volumes' host only."""

from __future__ import annotations

import random

import pytest

from scheduler.filters import VolumeHostFilter
from scheduler.model import WeightSettings
from scheduler.select import NoValidHost, select_host
from tests.unit.scheduler.helpers import host, request


def test_inactive_without_a_required_host() -> None:
    f = VolumeHostFilter()
    assert not f.active(request())
    assert f.reject(host("h1"), request()) is None


def test_only_the_required_host_passes() -> None:
    f = VolumeHostFilter()
    req = request(required_host="h2")
    assert f.active(req)
    assert f.reject(host("h2"), req) is None
    assert f.reject(host("h1"), req) == "volume_host"


def test_select_places_on_the_volume_host_and_explains_a_refusal() -> None:
    hosts = [host(f"h{i}") for i in range(20)]
    settings = WeightSettings(candidate_limit=4)
    for seed in range(5):
        assert select_host(hosts, request(required_host="h7"), settings, random.Random(seed)).id == "h7"
    full = [host(f"h{i}", memory_mb=128 if i == 7 else 8192) for i in range(20)]
    with pytest.raises(NoValidHost) as err:
        select_host(full, request(required_host="h7"), settings, random.Random(1))
    assert (err.value.counts, err.value.total) == ({"memory": 1}, 1)  # only the pinned host was looked at
    assert str(err.value) == "no valid host among 1: memory 1"
