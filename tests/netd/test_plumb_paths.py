"""The OVS backend's fast paths for a new port, for real: link requests sent in bursts (``netd.nlbatch``), the
hybrid plug they make (quiet devices, the OVS end handed over before the rest is done), and flow changes
written straight to a bridge's OpenFlow socket (``ovs_openflow``) that install exactly what ``ovs-ofctl``
installs for the same lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from netd import linkdump, nlbatch
from netd.backends import ovs_flows
from netd.backends import ovs_hybrid as hybrid
from netd.backends import ovs_openflow as openflow
from netd.nsutil import entered
from shared.netmodel import Port, Subnet, Vpc, port_names, vpc_names
from tests.harness.ovs import OvsDaemons, skip_reason

VOLATILE = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def _links(namespace: str) -> dict[str, dict[str, Any]]:
    """``ip -d link`` per device, with its addresses from ``ip addr``."""
    def ip(*args: str) -> list[dict[str, Any]]:
        return list(json.loads(subprocess.run(["nsenter", f"--net={namespace}", "ip", "-j", "-d", *args],
                                              capture_output=True, text=True, check=True).stdout))

    addresses = {link["ifname"]: link.get("addr_info", []) for link in ip("addr", "show")}
    return {link["ifname"]: {**link, "addr_info": addresses.get(link["ifname"], [])} for link in ip("link", "show")}


def test_a_burst_makes_and_sets_devices_and_reports_the_first_error(namespace: str) -> None:
    other = f"{namespace}-peer"
    subprocess.run(["ip", "netns", "add", os.path.basename(other)], check=True)
    try:
        with entered(namespace):
            nlbatch.send([nlbatch.new_bridge("tcnb-br", 1400, up=False, snooping=False),
                          nlbatch.new_veth("tcnb-a", "tcnb-b", 1400, up=False),
                          nlbatch.set_link(0, name="tcnb-a", no_ipv6_addresses=True),
                          nlbatch.set_link(0, name="tcnb-a", up=True)])
            found = linkdump.indexes(["tcnb-br", "tcnb-a", "tcnb-b"])
            fd = os.open(other, os.O_RDONLY)
            try:
                nlbatch.send([nlbatch.set_link(found["tcnb-b"], master=found["tcnb-br"], mtu=1300),
                              nlbatch.new_veth("tcnb-c", "eth0", 1400, master=found["tcnb-br"], peer_netns_fd=fd,
                                               peer_address="02:00:00:00:00:42")])
            finally:
                os.close(fd)
            with pytest.raises(NetlinkError) as failed:
                nlbatch.send([nlbatch.set_link(found["tcnb-a"], mtu=1300), nlbatch.new_bridge("tcnb-br", 1400)])
            assert failed.value.code == 17 and "request 2 of 2" in str(failed.value)
        links = _links(namespace)
        bridge = links["tcnb-br"]["linkinfo"]["info_data"]
        assert bridge["mcast_snooping"] == 0 and bridge["stp_state"] == 0 and bridge["forward_delay"] == 0
        assert links["tcnb-a"]["operstate"] != "DOWN" and links["tcnb-a"]["inet6_addr_gen_mode"] == "none"
        assert links["tcnb-a"]["mtu"] == 1300  # the first request of the failed burst still applied
        assert links["tcnb-b"]["master"] == "tcnb-br" and links["tcnb-b"]["mtu"] == 1300
        assert links["tcnb-c"]["master"] == "tcnb-br"
        inside = _links(other)["eth0"]
        assert inside["address"] == "02:00:00:00:00:42" and inside["mtu"] == 1400
    finally:
        subprocess.run(["ip", "netns", "delete", os.path.basename(other)], check=False)


def test_a_new_hybrid_plug_is_quiet_and_hands_over_its_ovs_end_before_it_is_attached(namespace: str) -> None:
    names = port_names("tc-plumb-port")
    subprocess.run(["nsenter", f"--net={namespace}", "ip", "link", "add", names.veth, "type", "veth", "peer",
                    "name", "tcpp-inst"], check=True)
    seen: list[tuple[bool, str | None, bool]] = []

    def ready(made: bool) -> None:
        links = _links(namespace)
        seen.append((made, links[names.veth].get("master"), names.hybrid_uplink_peer in links))

    with entered(namespace):
        changes = hybrid.ensure_hybrid(names, names.veth, 1400, ready)
        assert hybrid.ensure_hybrid(names, names.veth, 1400, ready) == []  # the repair path finds it right
    assert seen == [(True, None, True), (False, names.hybrid_bridge, True)]
    assert f"created hybrid bridge {names.hybrid_bridge}" in changes
    links = _links(namespace)
    for name in (names.hybrid_bridge, names.hybrid_uplink, names.hybrid_uplink_peer):
        assert not [a for a in links[name]["addr_info"] if a["family"] == "inet6"], name
        assert links[name]["mtu"] == 1400 and "UP" in links[name]["flags"]
    assert links[names.hybrid_bridge]["linkinfo"]["info_data"]["mcast_snooping"] == 0
    assert links[names.veth]["master"] == links[names.hybrid_uplink]["master"] == names.hybrid_bridge


def test_flow_lines_outside_the_subset_are_left_to_ovs_ofctl() -> None:
    learn = next(f for f in ovs_flows.wanted_flows({}, [1], {}) if "learn(" in f)
    assert openflow.flow_mod(f"add {learn}", 1) is None
    assert openflow.flow_mod("add cookie=0x7463,table=3,priority=1,nw_src=10.0.0.1,actions=drop", 1) is None
    assert openflow.flow_mod("add cookie=0x7463,table=300,priority=1,actions=drop", 1) is None
    assert openflow.flow_mod("add cookie=0x7463,table=3,priority=1,actions=output:1,flood", 1) is None
    assert openflow.flow_mod(f"delete cookie={ovs_flows.OWN_COOKIE:#x}/-1", 1) is None
    assert openflow.encode(["add cookie=0x7463,table=3,priority=0,actions=drop", f"add {learn}"]) is None
    assert openflow.encode(["add cookie=0x7463,table=3,priority=0,actions=drop"]) is not None


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[OvsDaemons]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ns = f"tcpo{uuid.uuid4().hex[:5]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    ovs: OvsDaemons | None = None
    try:
        ovs = OvsDaemons(f"/run/netns/{ns}", tmp_path / "ovs").start()
        for bridge in ("tcb-of", "tcb-ct"):
            ovs.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev", "fail_mode=secure")
        yield ovs
    finally:
        if ovs is not None:
            ovs.stop()
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def _dump(ovs: OvsDaemons, bridge: str) -> list[str]:
    return sorted(VOLATILE.sub("", line).strip() for line in ovs.ofctl("dump-flows", bridge).splitlines()
                  if "cookie=" in line)


@pytest.mark.slow
def test_direct_flow_changes_install_what_ovs_ofctl_installs(switch: OvsDaemons) -> None:
    first = [f for f in ovs_flows.wanted_flows({"198.18.0.2": 5, "198.18.0.3": 6}, [1, 2, 1000],
                                               {"02:00:00:00:00:09": "198.18.0.2"}) if "learn(" not in f]
    second = [f for f in ovs_flows.wanted_flows({"198.18.0.2": 5}, [1, 2, 1000, 1001], {}) if "learn(" not in f]
    for batch in ([f"add {flow}" for flow in first], ovs_flows.diff_batch(first, second)):
        mods = openflow.encode(batch)
        assert mods is not None
        openflow.send(f"unix:{switch.dir}/tcb-of.mgmt", mods).finish(5.0)
        subprocess.run(["ovs-ofctl", "--bundle", "add-flows", f"unix:{switch.dir}/tcb-ct.mgmt", "-"],
                       input="\n".join(batch) + "\n", text=True, check=True)
        assert _dump(switch, "tcb-of") == _dump(switch, "tcb-ct")
    assert any("output:1,output:2,output:1000,output:1001" in line for line in _dump(switch, "tcb-of"))
    refused = openflow.encode(["add cookie=0x7463,table=255,priority=1,actions=drop"])
    assert refused is not None
    with pytest.raises(openflow.OpenFlowError, match="error type"):
        openflow.send(f"unix:{switch.dir}/tcb-of.mgmt", refused).finish(5.0)
    with pytest.raises(openflow.OpenFlowError):
        openflow.send(f"unix:{switch.dir}/tcb-absent.mgmt", refused)


@pytest.mark.slow
def test_a_trusting_sync_starts_no_process_and_falls_back_to_ovs_ofctl(switch: OvsDaemons,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"unix:{switch.dir}/tcb-of.mgmt"
    sync = ovs_flows.FlowSync()
    done = sync.sync(target, ovs_flows.wanted_flows({}, [1], {}), None, verify=True)
    started: list[str] = []
    real_start = ovs_flows._ofctl_start

    def counting(command: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        started.append(command)
        return real_start(command, *args, **kwargs)

    monkeypatch.setattr(ovs_flows, "_ofctl_start", counting)
    wanted = ovs_flows.wanted_flows({}, [1, 2], {})
    trusted = sync.sync(target, wanted, done.record, verify=False)
    assert trusted.changed and started == []
    assert any("output:1,output:2" in line for line in _dump(switch, "tcb-of"))

    def refuse(target: str, mods: list[bytes]) -> openflow.Pending:
        raise openflow.OpenFlowError("refused for the test")

    monkeypatch.setattr(openflow, "send", refuse)
    wanted = ovs_flows.wanted_flows({}, [1, 2, 3], {})
    assert sync.sync(target, wanted, trusted.record, verify=False).changed and started == ["add-flows"]
    assert any("output:1,output:2,output:3" in line for line in _dump(switch, "tcb-of"))


@pytest.mark.slow
def test_a_port_prepared_before_its_device_exists_is_plugged_and_an_abandoned_one_repaired(
        switch: OvsDaemons) -> None:
    from netd.backends.ovs import OvsBackend

    vpc = Vpc(vpc_id="tc-pp", vni=77, cidr="10.77.0.0/24", mtu=1400,
              subnets=[Subnet(subnet_id="s", cidr="10.77.0.0/24", gateway="10.77.0.1")])
    ports = [Port(port_id=f"tc-pp-{n}", instance_id=f"i{n}", vpc_id=vpc.vpc_id, subnet_id="s",
                  mac=f"02:00:00:00:77:0{n}", ip=f"10.77.0.{10 + n}", prefix_len=24, gateway="10.77.0.1")
             for n in range(2)]
    with entered(str(switch.ns_path)):
        backend = OvsBackend("netdev", switch.db)
        try:
            backend.ensure_vpc(vpc, "198.18.77.1")
            backend.begin_pass(False)
            first, second = (port_names(p.port_id) for p in ports)
            assert backend.prepare_port(ports[0], vpc.vni) == hybrid.created_changes(first)
            assert backend.prepare_port(ports[0], vpc.vni) == []  # already under way
            assert backend.prepare_port(ports[1], vpc.vni) == hybrid.created_changes(second)
            for names in (first, second):
                subprocess.run(["ip", "link", "add", names.veth, "mtu", "1400", "type", "veth", "peer", "name",
                                f"tcpp{names.veth[-4:]}"], check=True)
            changes = backend.plug_port(ports[0], vpc.vni)
            assert changes[:2] == [f"attached {first.veth} to its hybrid bridge",
                                   f"plugged port {ports[0].port_id} into {vpc_names(vpc.vni).bridge}"]
            backend.begin_pass(True)  # the second port's device failed meanwhile: its plug is finished anyway
            assert backend.prepare_port(ports[1], vpc.vni) == []  # not new any more: plug_port repairs it
            assert f"attached {second.veth} to its hybrid bridge" in backend.plug_port(ports[1], vpc.vni)
            backend.begin_pass(True)
            assert backend.plug_port(ports[0], vpc.vni) == [] and backend.plug_port(ports[1], vpc.vni) == []
        finally:
            backend.close()
    ofports = {name: int(switch.vsctl("get", "Interface", name, "ofport")) for name in
               (first.hybrid_uplink_peer, second.hybrid_uplink_peer)}
    requested = {name: int(switch.vsctl("get", "Interface", name, "ofport_request")) for name in ofports}
    assert ofports == requested
    flood = [line for line in _dump(switch, vpc_names(vpc.vni).bridge) if "priority=1,reg0" in line]
    assert all(f"output:{port}" in flood[0] for port in ofports.values())
    links = _links(str(switch.ns_path))
    assert links[first.veth]["master"] == first.hybrid_bridge and links[second.veth]["master"] == second.hybrid_bridge
