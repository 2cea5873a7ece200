"""Open vSwitch backend: one OVS bridge per VPC, VXLAN tunnel ports, ports plugged "hybrid".

Per VPC: bridge ``tcb-<vni>`` (``datapath_type`` a setting: ``system`` = the kernel datapath on real hosts,
``netdev`` = the userspace one, used where the openvswitch module is missing), fail mode ``secure`` with the
flows of ``ovs_flows`` (split-horizon flooding, static remote MACs, learning on local ports only), and one
VXLAN port per remote VTEP, ``tcx-<vni>-<hash of the VTEP>``, with ``options:remote_ip``, ``local_ip`` and
``key=<vni>``. Instance ports go through a per-port Linux bridge (``ovs_hybrid``) so that the firewall's
netfilter hooks see them; a router leg is plugged straight into the OVS bridge.

OVSDB is spoken through ovsdbapp (``ovs_db``); the backend keeps what it needs to rebuild its flows in the
bridge's ``external_ids`` (VNI, MTU, remote MACs), so a restarted netd adopts what it finds.

Cost per pass (a new port should carry traffic within ~200 ms of its document): inside a reconciler pass
(``begin_pass``) one ovsdb snapshot is read and reused until this backend writes; writes to ``external_ids``
only do not wait for ovs-vswitchd; in a pass with ``full=False`` flows are changed by difference, without
reading them back (``ovs_flows.FlowSync``); a new port's ofport is requested (``ofport_request``), so its
flows go in while its devices are made and ovs-vswitchd adds it; and new remote ports cost one ``ovs-ofctl``
run and one transaction. Outside a pass (direct calls) every call reads afresh and verifies.

Userspace datapath and the underlay: with ``netdev``, OVS sends VXLAN packets itself, through its own route
table (filled from the kernel's) and only out of an OVS bridge: the route to the remote VTEPs must point at
an OVS bridge's internal port that carries the local VTEP address, with the underlay NIC a port of that bridge
(the setup of OVS's "userspace tunneling" guide; ``tests/harness/ovs.py`` does it for simulated hosts). With
the kernel datapath nothing of that is needed: the kernel's VXLAN socket sends through the host's routes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netd.backends import ovs_hybrid as hybrid
from netd.backends.base import BackendError, NetworkBackend
from netd.backends.ovs_db import Bridge, Ovsdb, Snapshot, free_ofport
from netd.backends.ovs_flows import FlowSync, wanted_flows
from shared.netmodel import MAX_VNI, Port, Vpc, port_names, vpc_names

log = logging.getLogger("thecloud.netd.ovs")
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
DATAPATHS = ("system", "netdev")
DEFAULT_MTU = 1450
BRIDGE_PREFIX = "tcb-"
PORT_DEVICE_PREFIXES = ("tcp-", "tct-")
VNI_KEY = "thecloud-vni"
MTU_KEY = "thecloud-mtu"
FDB_KEY = "thecloud-fdb"
FLOWS_KEY = "thecloud-flows"
PORT_KEY = "thecloud-port-id"


def tunnel_name(vni: int, remote_vtep: str) -> str:
    """``tcx-<vni hex>-<6 hex of the VTEP>``: at most 15 characters, like every device name."""
    return f"{vpc_names(vni).vxlan}-{hashlib.sha256(remote_vtep.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Op:
    """One ovsdbapp command (``api.<method>(*args, **kwargs)``) for a transaction."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def add_to(self, api: Any, txn: Any) -> None:
        txn.add(getattr(api, self.method)(*self.args, **self.kwargs))

    @property
    def for_vswitchd(self) -> bool:
        """False for a write of ``external_ids`` only, which ovs-vswitchd ignores (no need to wait for it)."""
        return not (self.method == "db_set" and all(column == "external_ids" for column, _ in self.args[2:]))


def _cmd(method: str, *args: Any, **kwargs: Any) -> Op:
    return Op(method, args, kwargs)


def _builder(ops: list[Op]) -> Any:
    def build(api: Any, txn: Any) -> None:
        for op in ops:
            op.add_to(api, txn)

    return build


def _rundir_of(endpoint: str) -> str:
    if endpoint.startswith("unix:"):
        return os.path.dirname(endpoint[len("unix:"):])
    return "/var/run/openvswitch"


class OvsBackend(NetworkBackend):
    name = "ovs"

    def __init__(self, datapath: str = "system", ovsdb: str = DEFAULT_OVSDB, rundir: str | None = None,
                 netns_dir: str = "/run/netns", timeout: float = 10.0) -> None:
        """``ovsdb``: the ovsdb-server endpoint; ``rundir``: where ovs-vswitchd puts the bridges' OpenFlow
        sockets (``<bridge>.mgmt``; default: the directory of a unix ``ovsdb`` socket); ``netns_dir``: where
        netd names router namespaces (to fix the router leg's checksum offload, see ``plug``)."""
        if datapath not in DATAPATHS:
            raise ValueError(f"ovs datapath must be one of {', '.join(DATAPATHS)}, got {datapath!r}")
        self.datapath = datapath
        self.rundir = rundir or _rundir_of(ovsdb)
        self.netns_dir = netns_dir
        self.db = Ovsdb(ovsdb, timeout)
        self.flows = FlowSync()
        self._in_pass = False  # snapshots are reused only inside a reconciler pass
        self._snap: Snapshot | None = None
        self._verify = True

    def begin_pass(self, full: bool) -> None:
        self._in_pass, self._snap, self._verify = True, None, full

    # -- helpers -------------------------------------------------------------------------------------------

    def _bridge(self, snap: Snapshot, vni: int) -> Bridge:
        bridge = snap.bridges.get(vpc_names(vni).bridge)
        if bridge is None:
            raise BackendError(f"vpc bridge {vpc_names(vni).bridge} does not exist (vni {vni})")
        return bridge

    def _snapshot(self) -> Snapshot:
        """The pass's snapshot (read again after each write of this backend)."""
        if self._snap is not None:
            return self._snap
        snap = self.db.snapshot()
        if self._in_pass:
            self._snap = snap
        return snap

    def _commit(self, ops: list[Op]) -> None:
        if ops:
            self._snap = None
            self.db.commit(_builder(ops), wait_vswitchd=any(op.for_vswitchd for op in ops))

    def _target(self, bridge_name: str) -> str:
        return f"unix:{self.rundir}/{bridge_name}.mgmt"

    def _sync_flows(self, bridge_name: str) -> list[str]:
        return self._start_flows(bridge_name)()

    def _start_flows(self, bridge_name: str, snap: Snapshot | None = None, pending: int | None = None,
                     fdb: dict[str, str] | None = None, ops: list[Op] | None = None) -> Callable[[], list[str]]:
        """Starts making the bridge's flows right; the returned call finishes it. ``pending``: the ofport of a
        local port about to be added (not in ``snap`` yet): its flows go in first, so traffic flows as soon as
        ovs-vswitchd has the port. ``fdb``: the remote MACs to use instead of the bridge's recorded ones, and
        ``ops`` (external_ids writes, such as that new record) go into the transaction that records the flows."""
        snap = snap or self._snapshot()
        bridge = snap.bridges.get(bridge_name)
        if bridge is None:
            return list
        ifaces = [i for i in snap.ifaces.values() if i.bridge == bridge_name and i.ofport and i.ofport > 0]
        tunnels = {i.options["remote_ip"]: i.ofport for i in ifaces if i.type == "vxlan" and i.ofport}
        locals_ = [int(i.ofport) for i in ifaces if i.type not in ("vxlan", "internal") and i.ofport]
        if pending is not None and pending not in locals_:
            locals_.append(pending)
        if fdb is None:
            fdb = json.loads(bridge.external_ids.get(FDB_KEY) or "{}")
        flows = wanted_flows(tunnels, locals_, fdb)
        running = self.flows.start(self._target(bridge_name), flows, bridge.external_ids.get(FLOWS_KEY),
                                   self._verify)

        def finish() -> list[str]:
            done = running()
            record = [] if done.record is None else [
                _cmd("db_set", "Bridge", bridge_name, ("external_ids", {FLOWS_KEY: done.record}))]
            self._commit([*(ops or []), *record])
            return [f"installed {len(flows)} flows on {bridge_name}"] if done.changed else []

        return finish

    def _check_ports(self, bridge_name: str, names: set[str]) -> None:
        """ovsdbapp only logs ports ovs-vswitchd could not open: turn that into an error to retry."""
        snap = self._snapshot()
        broken = [f"{i.name}: {i.error or 'no ofport'}" for i in snap.ifaces.values()
                  if i.name in names and i.bridge == bridge_name and (i.error or not i.ofport or i.ofport < 0)]
        if broken:
            raise BackendError(f"ovs-vswitchd could not add {'; '.join(broken)}")

    # -- VPCs ----------------------------------------------------------------------------------------------

    def ensure_vpc(self, vpc: Vpc, local_vtep: str) -> list[str]:
        name = vpc_names(vpc.vni).bridge
        snap = self._snapshot()
        ops: list[Op] = []
        changes = self._bridge_ops(snap.bridges.get(name), vpc, ops)
        added = self._tunnel_ops(snap, vpc, local_vtep, ops, changes)
        if name in snap.bridges and not any(op.for_vswitchd for op in ops):
            orphans = self._remove_orphans(name)
            if not orphans:  # only remote ports changed (the usual case): one ovs-ofctl run, one transaction
                fdb = {p.mac.lower(): p.vtep for p in vpc.remote_ports}
                return changes + self._start_flows(name, snap, fdb=fdb, ops=ops)()
            changes += orphans
        self._commit(ops)
        if added:
            self._check_ports(name, added)
        changes += self._remove_orphans(name)
        return changes + self._sync_flows(name)

    def _bridge_ops(self, bridge: Bridge | None, vpc: Vpc, ops: list[Op]) -> list[str]:
        name = vpc_names(vpc.vni).bridge
        fdb = json.dumps({p.mac.lower(): p.vtep for p in vpc.remote_ports}, sort_keys=True)
        ids = {VNI_KEY: str(vpc.vni), MTU_KEY: str(vpc.mtu), FDB_KEY: fdb}
        if bridge is None:
            self.flows.forget(self._target(name))
            ops.append(_cmd("add_br", name, datapath_type=self.datapath))
            ops.append(_cmd("db_set", "Bridge", name, ("fail_mode", "secure"), ("external_ids", ids)))
            ops.append(_cmd("db_set", "Interface", name, ("mtu_request", vpc.mtu)))
            return [f"created ovs bridge {name} ({self.datapath})"]
        changes: list[str] = []
        settings: list[tuple[str, Any]] = []
        if bridge.datapath_type != self.datapath:
            settings.append(("datapath_type", self.datapath))
        if bridge.fail_mode != "secure":
            settings.append(("fail_mode", "secure"))
        if any(bridge.external_ids.get(k) != v for k, v in ids.items()):
            settings.append(("external_ids", ids))
            if bridge.external_ids.get(FDB_KEY) != fdb:
                changes.append(f"remote ports of {name}: {len(vpc.remote_ports)}")
        if settings:
            ops.append(_cmd("db_set", "Bridge", name, *settings))
            changes += [f"set {column} of {name}" for column, _ in settings if column != "external_ids"]
        if bridge.external_ids.get(MTU_KEY) != str(vpc.mtu):
            ops.append(_cmd("db_set", "Interface", name, ("mtu_request", vpc.mtu)))
            changes.append(f"set mtu {vpc.mtu} on {name}")
        return changes

    def _tunnel_ops(self, snap: Snapshot, vpc: Vpc, local_vtep: str, ops: list[Op], changes: list[str]) -> set[str]:
        bridge = vpc_names(vpc.vni).bridge
        wanted = {ip: tunnel_name(vpc.vni, ip) for ip in sorted(set(vpc.remote_vteps) - {local_vtep})}
        have = {i.name: i for i in snap.ifaces.values() if i.bridge == bridge and i.type == "vxlan"}
        for iface in have.values():
            remote = iface.options.get("remote_ip", "")
            if wanted.get(remote) != iface.name:
                ops.append(_cmd("del_port", iface.name, bridge=bridge))
                changes.append(f"removed tunnel {iface.name} to {remote or '?'}")
        added: set[str] = set()
        for remote, port in wanted.items():
            options = {"remote_ip": remote, "local_ip": local_vtep, "key": str(vpc.vni)}
            current = have.get(port)
            if current is None:
                ops.append(_cmd("add_port", bridge, port, may_exist=False, type="vxlan", options=options,
                                external_ids={VNI_KEY: str(vpc.vni)}))
                changes.append(f"added tunnel {port} to {remote}")
                added.add(port)
            elif any(current.options.get(k) != v for k, v in options.items()):
                ops.append(_cmd("db_set", "Interface", port, ("options", options)))
                changes.append(f"updated tunnel {port} to {remote}")
        return added

    def _remove_orphans(self, bridge_name: str) -> list[str]:
        """Hybrid plugs on this bridge whose instance device is gone (netd removed a stale port device)."""
        snap = self._snapshot()
        members = hybrid.hybrid_members()
        changes: list[str] = []
        for iface in snap.ifaces.values():
            port_id = iface.external_ids.get(PORT_KEY)
            if iface.bridge != bridge_name or not port_id:
                continue
            names = port_names(port_id)
            if not any(m.startswith(PORT_DEVICE_PREFIXES) for m in members.get(names.hybrid_bridge, [])):
                changes += self.unplug_port(port_id, sync=False)
        return changes

    def remove_vpc(self, vni: int) -> list[str]:
        name = vpc_names(vni).bridge
        snap = self._snapshot()
        changes: list[str] = []
        for iface in snap.ifaces.values():
            port_id = iface.external_ids.get(PORT_KEY)
            if iface.bridge == name and port_id:
                changes += hybrid.remove_hybrid(port_names(port_id))
        if name in snap.bridges:
            self._commit([_cmd("del_br", name)])
            self.flows.forget(self._target(name))
            changes.append(f"deleted ovs bridge {name}")
        return changes

    def present_vpcs(self) -> set[int]:
        found: set[int] = set()
        for name in self._snapshot().bridges:
            if name.startswith(BRIDGE_PREFIX):
                try:
                    vni = int(name[len(BRIDGE_PREFIX):], 16)
                except ValueError:
                    continue
                if vpc_names(vni).bridge == name and 1 <= vni <= MAX_VNI:
                    found.add(vni)
        return found

    # -- devices -------------------------------------------------------------------------------------------

    def _attach_ops(self, snap: Snapshot, bridge: str, device: str, external_ids: dict[str, str],
                    ops: list[Op], force: bool = False) -> bool:
        """Ops that put ``device`` on ``bridge`` (moving it from another bridge, or re-adding it when ``force``:
        the kernel device was recreated); False if it is there already."""
        iface = snap.ifaces.get(device)
        if not force and iface is not None and iface.bridge == bridge and iface.ofport and iface.ofport > 0:
            if any(iface.external_ids.get(k) != v for k, v in external_ids.items()):
                ops.append(_cmd("db_set", "Interface", device, ("external_ids", external_ids)))
            return False
        if iface is not None and iface.bridge:
            ops.append(_cmd("del_port", device, bridge=iface.bridge))
        ops.append(_cmd("add_port", bridge, device, may_exist=False, external_ids=external_ids))
        return True

    def plug(self, vni: int, device: str) -> list[str]:
        names = vpc_names(vni)
        self._snap = None  # the router (and its leg) may have been rebuilt since the pass's snapshot was read
        snap = self._snapshot()
        bridge = self._bridge(snap, vni).name
        changes = hybrid.ensure_up(device)
        if device == names.router_leg:
            # The router answers (DNS) and forwards from its namespace: its leg must not hand OVS packets
            # with partial checksums (see ovs_hybrid). The leg's peer lives in the router namespace.
            path = os.path.join(self.netns_dir, names.router_ns)
            if os.path.exists(path) and hybrid.disable_tx_checksum(names.router_leg_peer, path):
                changes.append(f"switched off tx checksum offload on {names.router_leg_peer}")
        ops: list[Op] = []
        if not self._attach_ops(snap, bridge, device, {VNI_KEY: str(vni)}, ops):
            self._commit(ops)
            return changes
        self._commit(ops)
        self._check_ports(bridge, {device})
        return [*changes, f"plugged {device} into {bridge}", *self._sync_flows(bridge)]

    def plug_port(self, port: Port, vni: int) -> list[str]:
        """A new port costs one ``ovs-ofctl`` run, one ovsdb transaction and the hybrid plug's netlink requests,
        overlapped: its ofport is chosen here (``ofport_request``), so its flows are installed while the
        devices are made and while ovs-vswitchd adds the port."""
        names = port_names(port.port_id)
        device = names.tap if port.kind == "tap" else names.veth
        snap = self._snapshot()
        bridge = self._bridge(snap, vni)
        mtu = int(bridge.external_ids.get(MTU_KEY) or DEFAULT_MTU)
        current = snap.ifaces.get(names.hybrid_uplink_peer)
        have = current.ofport if current is not None and current.bridge == bridge.name else None
        ofport = have if have is not None and have > 0 else free_ofport(snap, bridge.name, port.port_id)
        flows = self._start_flows(bridge.name, snap, pending=ofport)
        try:
            changes, recreated = hybrid.ensure_hybrid(names, device, mtu)
        except BaseException:
            flows()
            raise
        if current is not None and current.mtu_request != mtu:
            changes.append(f"set mtu {mtu} on {names.hybrid_uplink_peer}")
        ids = {PORT_KEY: port.port_id, "iface-id": port.port_id, "attached-mac": port.mac.lower()}
        ops: list[Op] = []
        moved = self._attach_ops(snap, bridge.name, names.hybrid_uplink_peer, ids, ops, force=recreated)
        if moved or current is None or current.mtu_request != mtu:
            ops.append(_cmd("db_set", "Interface", names.hybrid_uplink_peer, ("mtu_request", mtu)))
        if not moved:
            self._commit(ops)
            return changes + flows()
        ops.append(_cmd("db_set", "Interface", names.hybrid_uplink_peer, ("ofport_request", ofport)))
        self._snap = None
        added = self.db.commit_soon(_builder(ops), wait_vswitchd=True)
        try:
            flow_changes = flows()
        finally:
            added.result()
        self._check_ports(bridge.name, {names.hybrid_uplink_peer})
        if self._snapshot().ifaces[names.hybrid_uplink_peer].ofport != ofport:  # the request was not granted
            flow_changes += self._sync_flows(bridge.name)
        return [*changes, f"plugged port {port.port_id} into {bridge.name}", *flow_changes]

    def unplug_port(self, port_id: str, sync: bool = True) -> list[str]:
        names = port_names(port_id)
        snap = self._snapshot()
        iface = snap.ifaces.get(names.hybrid_uplink_peer)
        changes: list[str] = []
        if iface is not None and iface.bridge:
            self._commit([_cmd("del_port", names.hybrid_uplink_peer, bridge=iface.bridge)])
            changes.append(f"unplugged port {port_id} from {iface.bridge}")
        changes += hybrid.remove_hybrid(names)
        if sync and iface is not None and iface.bridge:
            changes += self._sync_flows(iface.bridge)
        return changes

    def plugged_ports(self) -> set[str]:
        return {member for members in hybrid.hybrid_members().values() for member in members
                if member.startswith(PORT_DEVICE_PREFIXES)}

    def firewall_bridge(self, port: Port, vni: int) -> str:
        return port_names(port.port_id).hybrid_bridge

    def close(self) -> None:
        self.db.close()
