"""``ovs_flows.FlowSync`` against a real ovs-vswitchd (userspace datapath) in its own network namespace:
trusting syncs change flows by difference, verifying syncs adopt them, and drift is repaired."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netd.backends.ovs_flows import OWN_COOKIE, FlowSync, diff_batch, wanted_flows
from tests.harness.ovs import OvsDaemons, skip_reason

pytestmark = pytest.mark.slow
BRIDGE = "tcb-fs"


def test_diff_batch_deletes_gone_matches_and_adds_new_or_changed_flows() -> None:
    old = wanted_flows({"198.18.0.2": 5}, [1, 2], {"02:00:00:00:00:09": "198.18.0.2"})
    new = wanted_flows({"198.18.0.2": 5}, [1, 2, 3], {})
    batch = diff_batch(old, new)
    assert batch[0] == f"delete_strict cookie={OWN_COOKIE:#x}/-1,table=3,priority=50,dl_dst=02:00:00:00:00:09"
    assert [line for line in batch if line.startswith("add")] == [f"add {f}" for f in new if f not in old]
    assert any("output:3" in line for line in batch)
    assert diff_batch(new, new) == []


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OvsDaemons, str]]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ns = f"tcofs{uuid.uuid4().hex[:5]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    ovs: OvsDaemons | None = None
    try:
        ovs = OvsDaemons(f"/run/netns/{ns}", Path(tmp_path_factory.mktemp("ovsfs"))).start()
        ovs.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev", "fail_mode=secure")
        yield ovs, f"unix:{ovs.dir}/{BRIDGE}.mgmt"
    finally:
        if ovs is not None:
            ovs.stop()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def _own_flows(ovs: OvsDaemons) -> list[str]:
    dump = ovs.ofctl("dump-flows", BRIDGE, f"cookie={OWN_COOKIE:#x}/-1")
    return [line for line in dump.splitlines() if "cookie=" in line]


def test_trusting_syncs_apply_differences_and_verifying_syncs_adopt_and_repair(
        switch: tuple[OvsDaemons, str]) -> None:
    ovs, target = switch
    sync = FlowSync()
    first = wanted_flows({}, [1], {})
    done = sync.sync(target, first, None, verify=False)  # nothing known yet: verifies and replaces
    assert done.changed and done.record is not None and not done.record.endswith(":")
    assert len(_own_flows(ovs)) == len(first)

    second = wanted_flows({}, [1, 2], {})
    trusted = sync.sync(target, second, done.record, verify=False)
    assert trusted.changed and trusted.record is not None and trusted.record.endswith(":")
    flows = _own_flows(ovs)
    assert len(flows) == len(second) and any("output:1,output:2" in flow for flow in flows)
    assert sync.sync(target, second, trusted.record, verify=False) == type(trusted)(False, None)

    adopted = sync.sync(target, second, trusted.record, verify=True)
    assert not adopted.changed and adopted.record is not None and not adopted.record.endswith(":")
    assert sync.sync(target, second, adopted.record, verify=True) == type(adopted)(False, None)

    restarted = FlowSync()  # a restarted netd adopts flows a trusting sync left, per the record
    assert restarted.sync(target, second, trusted.record, verify=True) == type(adopted)(False, adopted.record)

    ovs.ofctl("del-flows", BRIDGE, f"cookie={OWN_COOKIE:#x}/-1")  # drift: only a verifying sync sees it
    assert not sync.sync(target, second, adopted.record, verify=False).changed
    repaired = sync.sync(target, second, adopted.record, verify=True)
    assert repaired.changed and repaired.record == adopted.record
    assert len(_own_flows(ovs)) == len(second)
