"""The security-group compiler: a pure function from the document to nft text (checked by nft itself too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from netd.firewall import compile_ruleset, group_set, port_chain
from netd.nft import build
from shared.netmodel import HostNetwork, Port, Rule, SecurityGroup, Vpc, vpc_names


def _port(port_id: str, ip: str, groups: list[str], vpc: str = "v1") -> Port:
    return Port(port_id=port_id, instance_id=port_id, vpc_id=vpc, subnet_id="s", mac="02:00:00:00:00:0" + ip[-1],
                ip=ip, prefix_len=24, gateway="10.0.0.1", security_groups=groups)


def _doc(rules: list[Rule], members: list[str] | None = None) -> HostNetwork:
    return HostNetwork(host_id="h", vpcs=[Vpc(vpc_id="v1", vni=7, cidr="10.0.0.0/24")],
                       ports=[_port("p1", "10.0.0.5", ["web"]), _port("p2", "10.0.0.6", ["web", "db"])],
                       security_groups=[SecurityGroup(sg_id="web", vpc_id="v1", rules=rules,
                                                      members=members or ["10.0.0.5", "10.0.0.6"]),
                                        SecurityGroup(sg_id="db", vpc_id="v1", members=["10.0.0.6"])])


def _bridge(port: Port, vni: int) -> str:
    return vpc_names(vni).bridge


def _text(doc: HostNetwork) -> str:
    return build(compile_ruleset(doc, _bridge))


def _chain(text: str, name: str) -> list[str]:
    body = text.split(f"chain {name} {{\n", 1)[1].split("  }\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_rules_compile_to_per_port_chains_with_default_drop() -> None:
    p1 = _port("p1", "10.0.0.5", [])
    text = _text(_doc([Rule(direction="egress"),
                       Rule(direction="ingress", protocol="tcp", port_min=80, port_max=443, remote_cidr="0.0.0.0/0"),
                       Rule(direction="ingress", protocol="icmp", remote_cidr="192.0.2.0/24"),
                       Rule(direction="ingress", protocol="udp", port_min=53, remote_group="db")]))
    assert _chain(text, port_chain(p1, "egress")) == ["ct state invalid drop", "return", "drop"]
    assert _chain(text, port_chain(p1, "ingress")) == [
        "ct state invalid drop", "meta l4proto tcp th dport 80-443 accept",
        "ip saddr 192.0.2.0/24 meta l4proto icmp accept",
        f"ip saddr @{group_set('db')} meta l4proto udp th dport 53 accept", "drop"]
    assert '"tcb-7" . 10.0.0.5 : jump' in text
    assert 'ct zone set iifname map { "tcb-7" : 7 }' in text
    assert "ct state established,related accept" in _chain(text, "forward")


def test_a_port_without_groups_is_closed_both_ways() -> None:
    doc = _doc([])
    doc.ports.append(_port("p3", "10.0.0.7", []))
    text = _text(doc)
    assert _chain(text, port_chain(doc.ports[2], "ingress")) == ["ct state invalid drop", "drop"]
    assert _chain(text, port_chain(doc.ports[2], "egress")) == ["ct state invalid drop", "drop"]


def test_remote_group_sets_hold_the_members_and_unknown_groups_match_nothing() -> None:
    text = _text(_doc([Rule(direction="ingress", remote_group="web"),
                       Rule(direction="ingress", remote_group="gone")]))
    assert f"set {group_set('web')} {{\n    type ipv4_addr\n    elements = {{ 10.0.0.5, 10.0.0.6 }}" in text
    assert "gone" not in text and _chain(text, port_chain(_port("p1", "10.0.0.5", []), "ingress"))[-2:] == [
        f"ip saddr @{group_set('web')} accept", "drop"]


def test_anti_spoofing_per_port_device() -> None:
    text = _text(_doc([]))
    assert "ether saddr != 02:00:00:00:00:05 drop" in text
    assert "ether type arp arp saddr ip != 10.0.0.5 drop" in text
    assert "ether type ip ip saddr != 10.0.0.5 drop" in text


def test_same_document_same_text_and_any_change_changes_the_hash() -> None:
    assert _text(_doc([Rule(direction="egress")])) == _text(_doc([Rule(direction="egress")]))
    first = _text(_doc([Rule(direction="egress")]))
    second = _text(_doc([Rule(direction="egress"), Rule(direction="ingress", protocol="icmp")]))
    assert first.split('comment "')[1][:19] != second.split('comment "')[1][:19]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft")
def test_nft_accepts_the_ruleset() -> None:
    ns = f"tcfw{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        text = _text(_doc([Rule(direction="egress"), Rule(direction="ingress", remote_group="web"),
                           Rule(direction="ingress", protocol="tcp", port_min=22)]))
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True,
                              capture_output=True)
        assert done.returncode == 0, done.stderr
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], text=True,
                                 capture_output=True, check=True).stdout
        assert listing.count("table inet thecloud") == 1 and listing.count("table bridge thecloud") == 1
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
