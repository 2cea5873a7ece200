"""VPC peering on one host: a veth between the two VPCs' router namespaces, with a route each way.

The near end (``peering_names(id).near``) lives in the router of the VPC with the lower VNI. Each end carries
its own router's transit address as a /32 with the other router's as peer (unique per VPC, so one router
can hold many peerings), and each router routes the other VPC's CIDR via that peer address.
"""

from __future__ import annotations

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd.nsutil import iproute_in
from netd.router import Router, RouterError, ensure_veth_pair
from shared.netmodel import HostNetwork, peering_names, transit_addresses, vpc_names

PREFIXES = ("tcy-", "tcz-")


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def ensure_peerings(router: Router, doc: HostNetwork) -> list[str]:
    """Every peering whose two VPCs are both in the document is wired; stale peering links are removed."""
    by_vni = {v.vni: v for v in doc.vpcs}
    wanted: dict[int, set[str]] = {v.vni: set() for v in doc.vpcs}
    changes: list[str] = []
    for vpc in doc.vpcs:
        for peering in vpc.peerings:
            other = by_vni.get(peering.peer_vni)
            if other is None or vpc.vni > other.vni:
                continue
            names = peering_names(peering.peering_id)
            wanted[vpc.vni].add(names.near)
            wanted[other.vni].add(names.far)
            changes += _wire(router, vpc.vni, vpc.cidr, other.vni, other.cidr, names.near, names.far)
    for vni in router.present() & set(by_vni):
        with iproute_in(router.ns_path(vni)) as inner:
            for link in inner.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if name.startswith(PREFIXES) and name not in wanted.get(vni, set()):
                    inner.link("del", index=link["index"])
                    changes.append(f"deleted peering link {name}")
    return changes


def _wire(router: Router, near_vni: int, near_cidr: str, far_vni: int, far_cidr: str, near: str,
          far: str) -> list[str]:
    near_addr, far_addr = transit_addresses(near_vni)[1], transit_addresses(far_vni)[1]
    changes: list[str] = []
    try:
        with iproute_in(router.ns_path(near_vni)) as a, iproute_in(router.ns_path(far_vni)) as b:
            changes += ensure_veth_pair(a, b, router.ns_path(far_vni), near, far, 1500)
            for ipr, dev, local, peer, cidr in ((a, near, near_addr, far_addr, far_cidr),
                                                (b, far, far_addr, near_addr, near_cidr)):
                index = _index(ipr, dev)
                assert index is not None
                have = {(x.get_attr("IFA_LOCAL"), x.get_attr("IFA_ADDRESS")) for x in ipr.get_addr(index=index)}
                if (local, peer) not in have:
                    ipr.addr("add", index=index, local=local, address=peer, prefixlen=32)
                    changes.append(f"address {local} peer {peer} on {dev}")
                routes = ipr.get_routes(family=2, dst=cidr.split("/")[0], dst_len=int(cidr.split("/")[1]),
                                        table=254)
                if not any(r.get_attr("RTA_GATEWAY") == peer for r in routes):
                    ipr.route("replace", dst=cidr, gateway=peer, oif=index)
                    router_ns = vpc_names(near_vni if dev == near else far_vni).router_ns
                    changes.append(f"route {cidr} via {dev} in {router_ns}")
    except NetlinkError as exc:
        raise RouterError(f"peering {near}: {exc}") from exc
    return changes
