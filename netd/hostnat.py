"""The host namespace's share of NAT: elastic IP routes and proxy ARP, port mappings, outbound masquerade.

- An elastic IP is routed (/32, protocol ``RTPROT``) into its VPC's router through the transit link, and
  the host answers ARP for it on the public interface (a proxy neighbour entry with the same protocol);
  the router does the DNAT/SNAT, so the instance sees the real client address.
- A port mapping is a DNAT of (any local address, host port) to the router's transit address, where the
  router DNATs it on to the instance. Clients on the host itself may use 127.0.0.1 (the all-in-one case):
  their connections are masqueraded to the host's transit address, which needs ``route_localnet`` on the
  transit link (set by the router) so the kernel routes loopback-sourced packets there and back.
- Router transit addresses of VPCs with a ``nat_outbound`` subnet are masqueraded out of the public
  interface. Everything lives in the table ``ip thecloud_nat``; routes and proxy entries netd did not add
  (another protocol) are never touched.
"""

from __future__ import annotations

import json

from pyroute2 import IPRoute

from netd.nft import OwnedRuleset
from netd.nsutil import run
from shared.netmodel import HostNetwork, transit_addresses, vpc_names

RTPROT = 124  # "thecloud": routes and proxy entries netd owns in the host namespace
NAT_TABLE = "ip thecloud_nat"


def nat_rules(doc: HostNetwork, public_interface: str) -> str:
    vnis = {v.vpc_id: v.vni for v in doc.vpcs}
    pre: list[str] = []
    out: list[str] = []
    mapped: set[str] = set()  # transit links that carry port mappings
    for port in sorted(doc.ports, key=lambda p: p.port_id):
        if port.vpc_id not in vnis:
            continue
        router_addr = transit_addresses(vnis[port.vpc_id])[1]
        for m in port.port_mappings:
            rule = f"{m.protocol} dport {m.host_port} dnat to {router_addr}:{m.host_port}"
            pre.append(f"fib daddr type local {rule}")
            out.append(f"fib daddr type local {rule}")
            mapped.add(vpc_names(vnis[port.vpc_id]).transit)
    sources = sorted(transit_addresses(v.vni)[1] for v in doc.vpcs if any(s.nat_outbound for s in v.subnets))
    post = [f'oifname "{public_interface}" ip saddr {{ {", ".join(sources)} }} masquerade'] if sources else []
    if mapped:
        links = ", ".join(f'"{name}"' for name in sorted(mapped))
        post.append(f"ip saddr 127.0.0.0/8 oifname {{ {links} }} masquerade")

    def chain(name: str, head: str, lines: list[str]) -> str:
        return f"  chain {name} {{\n    {head}\n" + "".join(f"    {line}\n" for line in lines) + "  }\n"

    return (chain("pre", "type nat hook prerouting priority dstnat; policy accept;", pre)
            + chain("out", "type nat hook output priority -100; policy accept;", out)
            + chain("post", "type nat hook postrouting priority srcnat; policy accept;", post))


class HostNat:
    def __init__(self, public_interface: str) -> None:
        self.public_interface = public_interface
        self.ruleset = OwnedRuleset([NAT_TABLE])
        self.verify = True  # False: proxy entries this process set for the same elastic IPs are trusted
        self._proxies: set[str] | None = None

    def ensure(self, ipr: IPRoute, doc: HostNetwork) -> list[str]:
        changes = self.ruleset.ensure([(NAT_TABLE, nat_rules(doc, self.public_interface))])
        vnis = {v.vpc_id: v.vni for v in doc.vpcs}
        want = {p.elastic_ip: vnis[p.vpc_id] for p in doc.ports if p.elastic_ip and p.vpc_id in vnis}
        changes += self._sync_routes(ipr, want)
        if self.verify or self._proxies != set(want):
            changes += self._sync_proxies(set(want))  # `ip neigh` is a process: not on every pass
            self._proxies = set(want)
        return changes

    def _sync_routes(self, ipr: IPRoute, want: dict[str, int]) -> list[str]:
        changes = []
        have = {r.get_attr("RTA_DST"): r for r in ipr.get_routes(family=2, table=254, proto=RTPROT)}
        for eip, vni in sorted(want.items()):
            router_addr = transit_addresses(vni)[1]
            route = have.get(eip)
            if route is not None and route.get_attr("RTA_GATEWAY") == router_addr:
                continue
            found = ipr.link_lookup(ifname=vpc_names(vni).transit)
            if not found:
                continue
            ipr.route("replace", dst=f"{eip}/32", gateway=router_addr, oif=found[0], proto=RTPROT)
            changes.append(f"route {eip} -> {vpc_names(vni).router_ns}")
        for eip in sorted(set(have) - set(want)):
            ipr.route("del", dst=f"{eip}/32", table=254, proto=RTPROT)
            changes.append(f"removed route {eip}")
        return changes

    def _sync_proxies(self, want: set[str]) -> list[str]:
        listing = json.loads(run(["ip", "-j", "neigh", "show", "proxy"]) or "[]")
        have = {(e.get("dst"), e.get("dev")) for e in listing if str(e.get("protocol")) in (str(RTPROT), "124")}
        desired = {(eip, self.public_interface) for eip in want}
        changes = []
        for eip, dev in sorted(desired - have):
            run(["ip", "neigh", "replace", "proxy", eip, "dev", dev, "protocol", str(RTPROT)])
            changes.append(f"proxy arp {eip} on {dev}")
        for eip, dev in sorted(have - desired):
            run(["ip", "neigh", "del", "proxy", str(eip), "dev", str(dev)], check=False)
            changes.append(f"removed proxy arp {eip}")
        return changes
