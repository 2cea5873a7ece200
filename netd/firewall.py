"""Security groups compiled to netd's host nftables ruleset (a pure function of the document).

Two tables, applied in one transaction (``netd.nft``):

``bridge thecloud``  anti-spoofing: a port's device may only send frames from its own MAC, ARP for its own
                     MAC/IP and IPv4 from its own address (nothing else: no IPv6, no other ethertypes).
``inet thecloud``    with ``bridge-nf-call-iptables=1`` bridged IPv4 reaches the inet hooks with iif/oif =
                     the bridge (the port is not visible there), so ports are told apart by (bridge, address):
  zones    raw prerouting: conntrack zone = the VPC's (CIDRs overlap between VPCs).
  forward  established/related accept; (bridge . saddr) -> jump the source port's egress chain, which
           returns when a rule allows and drops otherwise; (bridge . daddr) -> jump the destination port's
           ingress chain, which accepts when a rule allows and drops otherwise. Traffic that involves no
           local port (router to another host, underlay) is not ours to judge and passes.

Rule changes rebuild the tables atomically; conntrack keeps established flows (like AWS security groups,
removing a rule does not cut tracked connections; new ones are refused at once).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

from shared.netmodel import HostNetwork, Port, Rule, SecurityGroup, port_names, vpc_names

BRIDGE_TABLE = "bridge thecloud"
INET_TABLE = "inet thecloud"


def _tag(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:10]


def port_chain(port: Port, direction: str) -> str:
    return f"{direction[:2]}_{_tag(port.port_id)}"


def group_set(sg_id: str) -> str:
    return f"g_{_tag(sg_id)}"


def _match(rule: Rule, groups: dict[str, SecurityGroup]) -> str | None:
    """The nft match of one rule, or None when it can never match (a remote group we know nothing of)."""
    peer = "daddr" if rule.direction == "egress" else "saddr"
    parts: list[str] = []
    if rule.remote_group is not None:
        if rule.remote_group not in groups:
            return None
        parts.append(f"ip {peer} @{group_set(rule.remote_group)}")
    elif rule.remote_cidr and ipaddress.ip_network(rule.remote_cidr, strict=False).prefixlen > 0:
        parts.append(f"ip {peer} {ipaddress.ip_network(rule.remote_cidr, strict=False)}")
    if rule.protocol != "any":
        parts.append(f"meta l4proto {rule.protocol}")
        if rule.protocol in ("tcp", "udp") and (rule.port_min or rule.port_max):
            low = rule.port_min or 1
            high = rule.port_max or low
            parts.append(f"th dport {low}" if low == high else f"th dport {low}-{high}")
    return " ".join(parts)


def _port_chains(port: Port, groups: dict[str, SecurityGroup]) -> list[str]:
    chains = []
    for direction, verdict in (("egress", "return"), ("ingress", "accept")):
        lines = ["ct state invalid drop"]
        seen: set[str] = set()
        for sg_id in port.security_groups:
            group = groups.get(sg_id)
            for rule in group.rules if group else []:
                if rule.direction != direction:
                    continue
                match = _match(rule, groups)
                if match is None:
                    continue
                line = f"{match} {verdict}".strip()
                if line not in seen:
                    seen.add(line)
                    lines.append(line)
        lines.append("drop")
        body = "".join(f"    {line}\n" for line in lines)
        chains.append(f"  chain {port_chain(port, direction)} {{\n{body}  }}\n")
    return chains


def _spoof_chain(port: Port) -> str:
    mac = port.mac.lower()
    return (f"  chain sp_{_tag(port.port_id)} {{\n"
            f"    ether saddr != {mac} drop\n"
            f"    ether type arp arp saddr ether != {mac} drop\n"
            f"    ether type arp arp saddr ip != {port.ip} drop\n"
            f"    ether type arp accept\n"
            f"    ether type ip ip saddr != {port.ip} drop\n"
            f"    ether type ip accept\n"
            f"    drop\n  }}\n")


def compile_ruleset(doc: HostNetwork, firewall_bridge: Callable[[Port, int], str],
                    extra_bridges: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """The (table, body) pairs for ``netd.nft``: every local port of a VPC in ``doc`` is filtered.

    ``firewall_bridge(port, vni)`` is the backend's; ``extra_bridges`` maps further bridge names to the VNI
    whose conntrack zone they use (the VPC bridges themselves are always included).
    """
    vnis = {v.vpc_id: v.vni for v in doc.vpcs}
    groups = {g.sg_id: g for g in doc.security_groups}
    ports = sorted((p for p in doc.ports if p.vpc_id in vnis), key=lambda p: p.port_id)
    zones: dict[str, int] = dict(extra_bridges or {})
    for vpc in doc.vpcs:
        zones[vpc_names(vpc.vni).bridge] = vpc.vni
    egress, ingress, spoof = [], [], []
    for port in ports:
        bridge = firewall_bridge(port, vnis[port.vpc_id])
        zones[bridge] = vnis[port.vpc_id]
        egress.append(f'"{bridge}" . {port.ip} : jump {port_chain(port, "egress")}')
        ingress.append(f'"{bridge}" . {port.ip} : jump {port_chain(port, "ingress")}')
        names = port_names(port.port_id)
        spoof.append(f'"{names.tap if port.kind == "tap" else names.veth}" : jump sp_{_tag(port.port_id)}')

    inet: list[str] = []
    used_groups = sorted({r.remote_group for g in groups.values() for r in g.rules
                          if r.remote_group and r.remote_group in groups})
    for sg_id in used_groups:
        members = sorted(set(groups[sg_id].members), key=lambda a: ipaddress.ip_address(a))
        elements = f"    elements = {{ {', '.join(members)} }}\n" if members else ""
        inet.append(f"  set {group_set(sg_id)} {{\n    type ipv4_addr\n{elements}  }}\n")
    zone_rule = ""
    if zones:
        entries = ", ".join(f'"{name}" : {zone}' for name, zone in sorted(zones.items()))
        zone_rule = f"    ct zone set iifname map {{ {entries} }}\n"
    inet.append(f"  chain zones {{\n    type filter hook prerouting priority raw; policy accept;\n{zone_rule}  }}\n")
    forward = ["type filter hook forward priority filter; policy accept;",
               "ct state established,related accept"]
    if egress:
        forward.append(f"iifname . ip saddr vmap {{ {', '.join(egress)} }}")
        forward.append(f"oifname . ip daddr vmap {{ {', '.join(ingress)} }}")
    inet.append("  chain forward {\n" + "".join(f"    {line}\n" for line in forward) + "  }\n")
    for port in ports:
        inet.extend(_port_chains(port, groups))

    pre = "type filter hook prerouting priority filter; policy accept;"
    vmap = f"    iifname vmap {{ {', '.join(spoof)} }}\n" if spoof else ""
    layer2 = [f"  chain prerouting {{\n    {pre}\n{vmap}  }}\n", *(_spoof_chain(p) for p in ports)]
    return [(BRIDGE_TABLE, "".join(layer2)), (INET_TABLE, "".join(inet))]
