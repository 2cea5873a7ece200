"""A VPC's router on this host: a namespace with a leg into the VPC's bridge and a transit link to the host.

Every host with the VPC runs an identical router (same gateway addresses, same MAC from ``router_mac``):
an instance always reaches its own host's router. The router holds
- on its leg (``tcri-<vni>``): every subnet's gateway address, and a permanent neighbour entry per port of
  the VPC (remote ones too: its ARP requests stay on this host, see the linuxbridge backend);
- on its transit end (``tcru-<vni>``): the router side of ``transit_addresses(vni)`` and the default route;
- an nftables table ``ip thecloud``: elastic IPs (DNAT in, SNAT out), port mappings (DNAT), outbound SNAT to
  the transit address for ``nat_outbound`` subnets, and a forward filter so nothing un-NATed leaves or enters
  through the transit link.
"""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd.nft import OwnedRuleset
from netd.nsutil import NamespaceDir, iproute_in, sysctl
from shared.netmodel import Port, Vpc, router_mac, transit_addresses, vpc_names

NUD_PERMANENT = 0x80
IFF_UP = 0x1
ROUTER_TABLE = "ip thecloud"


class RouterError(Exception):
    pass


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def ensure_veth_pair(ipr: IPRoute, inner: IPRoute, ns_path: str, host: str, peer: str, mtu: int,
                     peer_mac: str | None = None) -> list[str]:
    """A veth ``host`` (this namespace) <-> ``peer`` (in ``ns_path``), both up; recreated if half is gone."""
    changes: list[str] = []
    index, inside = _index(ipr, host), _index(inner, peer)
    if index is not None and (inside is None or ipr.link("get", index=index)[0].get_attr("IFLA_LINK") != inside):
        ipr.link("del", index=index)
        changes.append(f"deleted half-built {host}")
        index = None
    if index is None:
        if inside is not None:
            inner.link("del", index=inside)
        ipr.link("add", ifname=host, kind="veth", mtu=mtu, peer={"ifname": peer, "net_ns_fd": ns_path, "mtu": mtu})
        changes.append(f"created {host}")
        index, inside = _index(ipr, host), _index(inner, peer)
    if index is None or inside is None:
        raise RouterError(f"veth {host}/{peer} did not appear")
    if not ipr.link("get", index=index)[0]["flags"] & IFF_UP:
        ipr.link("set", index=index, state="up")
    link = inner.link("get", index=inside)[0]
    if peer_mac and (link.get_attr("IFLA_ADDRESS") or "").lower() != peer_mac:
        inner.link("set", index=inside, address=peer_mac)
    if not link["flags"] & IFF_UP:
        inner.link("set", index=inside, state="up")
    return changes


def sync_addresses(ipr: IPRoute, index: int, want: set[tuple[str, int]], label: str) -> list[str]:
    changes = []
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    for address, prefix in sorted(want - have):
        ipr.addr("add", index=index, address=address, prefixlen=prefix)
        changes.append(f"address {address}/{prefix} on {label}")
    for address, prefix in sorted(have - want):
        ipr.addr("del", index=index, address=address, prefixlen=prefix)
        changes.append(f"removed {address}/{prefix} from {label}")
    return changes


def _gateway_addresses(vpc: Vpc) -> set[tuple[str, int]]:
    return {(s.gateway, ipaddress.ip_network(s.cidr, strict=False).prefixlen) for s in vpc.subnets}


class Router:
    """Builds and removes VPC routers in one namespace directory."""

    def __init__(self, namespaces: NamespaceDir) -> None:
        self.namespaces = namespaces
        self._rulesets: dict[int, OwnedRuleset] = {}
        self.verify = True  # passed on to the routers' rulesets (OwnedRuleset.verify)
        self._shapes: dict[int, str] = {}  # vni -> the VPC (without ports and DNS) its router was last built for
        self._neighbours: dict[int, dict[str, str]] = {}  # vni -> the neighbour entries (ip -> MAC) last set
        self.replaced_legs: set[int] = set()  # VNIs whose router leg was (re)made: it needs plugging again

    def present(self) -> set[int]:
        found = set()
        for name in self.namespaces.names("tc-r-"):
            try:
                found.add(int(name[len("tc-r-"):], 16))
            except ValueError:
                continue
        return found

    def ns_path(self, vni: int) -> str:
        return self.namespaces.path(vpc_names(vni).router_ns)

    def ensure(self, ipr: IPRoute, vpc: Vpc, local_ports: list[Port]) -> list[str]:
        """A pass that trusts what this process built (``verify`` False) only adds and removes neighbour
        entries when nothing but the VPC's ports changed since the router was last built: the plumbing of a
        new port costs one netlink request here, not a check of the whole router."""
        names = vpc_names(vpc.vni)
        shape = vpc.model_dump_json(exclude={"dns_records", "remote_ports"})
        neighbours = _neighbours(vpc, local_ports)
        if self.verify or self._shapes.get(vpc.vni) != shape or not self.namespaces.exists(names.router_ns):
            self._shapes.pop(vpc.vni, None)
            changes = self._build(ipr, vpc, neighbours)
            self._shapes[vpc.vni], self._neighbours[vpc.vni] = shape, neighbours
        else:
            changes = self._patch_neighbours(vpc, neighbours)
        ruleset = self._rulesets.setdefault(vpc.vni, OwnedRuleset([ROUTER_TABLE], self.ns_path(vpc.vni)))
        ruleset.verify = self.verify
        return changes + ruleset.ensure([(ROUTER_TABLE, router_rules(vpc, local_ports))])

    def _build(self, ipr: IPRoute, vpc: Vpc, neighbours: dict[str, str]) -> list[str]:
        """Checks and repairs every part of the router (its namespace, links, addresses, routes, neighbours)."""
        names = vpc_names(vpc.vni)
        changes: list[str] = []
        if self.namespaces.create(names.router_ns):
            changes.append(f"created namespace {names.router_ns}")
            self._forget(vpc.vni)  # a ruleset context of an earlier namespace of that name would act on that one
        path = self.ns_path(vpc.vni)
        sysctl("net.ipv4.conf.all.rp_filter", "0", path)
        sysctl("net.ipv4.conf.default.rp_filter", "0", path)
        host_addr, router_addr = transit_addresses(vpc.vni)
        try:
            with iproute_in(path) as inner:
                leg_changes = ensure_veth_pair(ipr, inner, path, names.router_leg, names.router_leg_peer, vpc.mtu,
                                               router_mac(vpc.vni))
                if leg_changes:
                    self.replaced_legs.add(vpc.vni)
                changes += leg_changes
                changes += ensure_veth_pair(ipr, inner, path, names.transit, names.transit_peer, 1500)
                sysctl(f"net.ipv4.conf.{names.transit}.route_localnet", "1")  # port mappings used via 127.0.0.1
                transit = _index(ipr, names.transit)
                leg, inner_transit = _index(inner, names.router_leg_peer), _index(inner, names.transit_peer)
                assert transit is not None and leg is not None and inner_transit is not None
                changes += sync_addresses(ipr, transit, {(host_addr, 31)}, names.transit)
                changes += sync_addresses(inner, inner_transit, {(router_addr, 31)}, names.transit_peer)
                changes += sync_addresses(inner, leg, _gateway_addresses(vpc), names.router_leg_peer)
                default = inner.get_routes(family=2, dst_len=0, table=254)
                if {r.get_attr("RTA_GATEWAY") for r in default} != {host_addr}:
                    inner.route("replace", dst="0.0.0.0/0", gateway=host_addr, oif=inner_transit)
                    changes.append(f"default route of {names.router_ns}")
                have = {n.get_attr("NDA_DST"): (n.get_attr("NDA_LLADDR") or "").lower()
                        for n in inner.get_neighbours(ifindex=leg, family=2) if n["state"] & NUD_PERMANENT}
                changes += _sync_neighbours(inner, leg, vpc.vni, have, neighbours)
        except NetlinkError as exc:
            raise RouterError(f"router of vpc {vpc.vpc_id}: {exc}") from exc
        return changes

    def _patch_neighbours(self, vpc: Vpc, want: dict[str, str]) -> list[str]:
        """Neighbour entries changed by difference from the ones this process last set (no dump)."""
        have = self._neighbours.get(vpc.vni, {})
        if have == want:
            return []
        names = vpc_names(vpc.vni)
        self._shapes.pop(vpc.vni, None)  # rebuilt by the next pass if this fails half-way
        try:
            with iproute_in(self.ns_path(vpc.vni)) as inner:
                leg = _index(inner, names.router_leg_peer)
                if leg is None:
                    raise RouterError(f"router of vpc {vpc.vpc_id}: {names.router_leg_peer} is missing")
                changes = _sync_neighbours(inner, leg, vpc.vni, have, want)
        except NetlinkError as exc:
            raise RouterError(f"router of vpc {vpc.vpc_id}: {exc}") from exc
        self._shapes[vpc.vni] = vpc.model_dump_json(exclude={"dns_records", "remote_ports"})
        self._neighbours[vpc.vni] = want
        return changes

    def remove(self, ipr: IPRoute, vni: int) -> list[str]:
        names = vpc_names(vni)
        changes = []
        for device in (names.router_leg, names.transit):
            index = _index(ipr, device)
            if index is not None:
                ipr.link("del", index=index)
                changes.append(f"deleted {device}")
        self._forget(vni)
        if self.namespaces.remove(names.router_ns):
            changes.append(f"deleted namespace {names.router_ns}")
        return changes

    def _forget(self, vni: int) -> None:
        self._shapes.pop(vni, None)
        self._neighbours.pop(vni, None)
        ruleset = self._rulesets.pop(vni, None)
        if ruleset is not None:
            ruleset.close()

    def close(self) -> None:
        """Releases the routers' nftables contexts (the routers stay)."""
        for vni in list(self._rulesets):
            self._forget(vni)


def _neighbours(vpc: Vpc, local_ports: list[Port]) -> dict[str, str]:
    """The router's permanent neighbour entries: every port of the VPC, remote and local (ip -> MAC)."""
    want = {p.ip: p.mac.lower() for p in vpc.remote_ports}
    want.update({p.ip: p.mac.lower() for p in local_ports})
    return want


def _sync_neighbours(inner: IPRoute, leg: int, vni: int, have: dict[str, str], want: dict[str, str]) -> list[str]:
    changed = 0
    for ip, mac in want.items():
        if have.get(ip) != mac:
            inner.neigh("replace", dst=ip, lladdr=mac, ifindex=leg, state=NUD_PERMANENT)
            changed += 1
    for ip in set(have) - set(want):
        inner.neigh("del", dst=ip, ifindex=leg)
        changed += 1
    return [f"{changed} neighbour entries in {vpc_names(vni).router_ns}"] if changed else []


def router_rules(vpc: Vpc, local_ports: list[Port]) -> str:
    """The body of the router's ``ip thecloud`` table (NAT and the transit filter)."""
    names = vpc_names(vpc.vni)
    transit = f'"{names.transit_peer}"'
    _, router_addr = transit_addresses(vpc.vni)
    pre, post = [], []
    natted: list[str] = []
    for port in sorted(local_ports, key=lambda p: p.port_id):
        if port.elastic_ip:
            pre.append(f"iifname {transit} ip daddr {port.elastic_ip} dnat to {port.ip}")
            post.append(f"oifname {transit} ip saddr {port.ip} snat to {port.elastic_ip}")
            natted.append(port.ip)
        for mapping in port.port_mappings:
            pre.append(f"iifname {transit} ip daddr {router_addr} {mapping.protocol} dport {mapping.host_port} "
                       f"dnat to {port.ip}:{mapping.port}")
    for subnet in vpc.subnets:
        if subnet.nat_outbound:
            post.append(f"oifname {transit} ip saddr {subnet.cidr} snat to {router_addr}")
            natted.append(subnet.cidr)
    forward = [f"oifname {transit} ct state established,related accept"]
    if natted:
        forward.append(f"oifname {transit} ip saddr {{ {', '.join(natted)} }} accept")
    forward += [f"oifname {transit} drop",
                f"iifname {transit} ct status dnat accept",
                f"iifname {transit} ct state established,related accept",
                f"iifname {transit} drop"]

    def chain(name: str, head: str, lines: list[str]) -> str:
        return f"  chain {name} {{\n    {head}\n" + "".join(f"    {line}\n" for line in lines) + "  }\n"

    return (chain("pre", "type nat hook prerouting priority dstnat; policy accept;", pre)
            + chain("post", "type nat hook postrouting priority srcnat; policy accept;", post)
            + chain("forward", "type filter hook forward priority filter; policy accept;", forward))
