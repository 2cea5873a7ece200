"""One level-triggered pass: make the host's data plane match a ``HostNetwork`` document.

Each step asks what is there and changes only what differs, so a pass over a host that is already right
changes nothing (and a restarted netd rebuilds nothing). The pass returns a readable reason ("no change",
or the changes made) and the state of every port. A failure on one VPC or port is reported for it and the
rest goes on; the next pass retries. Order matters for safety: the firewall is applied before any new port
is plugged (a port is never reachable unfiltered), and stale ports go before stale VPCs.

A full pass checks every port inside its instance namespace (a few netlink round trips each, ~10 ms per port
with the linuxbridge backend and more with OVS). A pass with ``full=False`` (the daemon's answer to a new
document) skips ports that are exactly as the last successful pass left them and whose device is still there,
so plugging one new port does not cost a check of every other one; the periodic passes stay full and repair
drift inside instances.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from pyroute2.netlink.exceptions import NetlinkError

from netd.backends.base import BackendError, NetworkBackend
from netd.nsutil import CommandError
from netd.plane import Plane
from netd.ports import PortError, host_device
from netd.router import RouterError
from shared.netmodel import HostNetwork, Port, Vpc, vpc_names

log = logging.getLogger("thecloud.netd.reconciler")
FAILURES = (BackendError, RouterError, PortError, CommandError, NetlinkError, OSError)
MAX_REASON = 2000


@dataclass
class PortStatus:
    port_id: str
    state: str  # "active" or "error"
    error: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"port_id": self.port_id, "state": self.state, "error": self.error}


class Superseded(Exception):
    """The pass stopped early: a newer document arrived (``run_once``'s ``superseded`` said so)."""


@dataclass
class _Pass:
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # step kind ("firewall", "router") -> seconds

    def attempt(self, what: str, step: Callable[[], list[str]], phase: str | None = None) -> bool:
        started = time.monotonic()
        try:
            self.changes.extend(step())
            return True
        except FAILURES as exc:
            self.errors.append(f"{what}: {exc}")
            log.warning("reconcile step failed", extra={"step": what, "error": str(exc)})
            return False
        finally:
            self.took(phase or what.split(" ")[0], started)

    def took(self, phase: str, started: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started


class Reconciler:
    def __init__(self, backend: NetworkBackend, plane: Plane, vtep: str, state_dir: str | None = None) -> None:
        self.backend = backend
        self.plane = plane
        self.vtep = vtep
        self._known_file = os.path.join(state_dir, "ports.json") if state_dir else None
        self._known: set[str] = self._load_known()
        self._settled: dict[str, str] = {}  # port id -> _fingerprint() of its last successful set-up
        self._vpcs_settled: dict[str, str] = {}  # vpc id -> _vpc_fingerprint() of its last successful set-up
        self._legs_plugged: set[str] = set()  # vpc ids whose router leg was plugged by this process
        self.last_phases: dict[str, float] = {}  # seconds per step kind of the last pass (logged by the daemon)

    def _load_known(self) -> set[str]:
        if not self._known_file:
            return set()
        try:
            with open(self._known_file, encoding="utf-8") as f:
                return set(json.load(f))
        except (OSError, ValueError):
            return set()

    def _save_known(self, port_ids: set[str]) -> None:
        if port_ids == self._known:
            return
        self._known = set(port_ids)
        if self._known_file:
            tmp = self._known_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(sorted(port_ids), f)
            os.replace(tmp, self._known_file)

    def run_once(self, doc: HostNetwork, full: bool = True,
                 superseded: Callable[[], bool] | None = None) -> tuple[str, list[PortStatus]]:
        """One pass; ``full=False`` trusts ports and VPCs that are unchanged since they were last set up (see
        above). ``superseded()`` is asked between steps: True stops the pass (raises ``Superseded``)."""

        def check() -> None:
            if superseded is not None and superseded():
                raise Superseded(doc.revision)

        step = _Pass()
        attempt = step.attempt
        vpcs = {v.vpc_id: v for v in doc.vpcs}
        ports = [p for p in doc.ports if p.vpc_id in vpcs]
        self.plane.begin_pass(full)
        self.backend.begin_pass(full)
        attempt("host", self.plane.prepare_host)
        attempt("firewall", lambda: self.plane.ensure_firewall(doc, self.backend.firewall_bridge))
        check()
        started = time.monotonic()
        scanned = len(step.changes)
        devices = self._remove_stale_ports(ports, step)
        built = self.backend.present_vpcs()
        removed = len(step.changes) > scanned
        step.took("scan", started)
        trusted: set[str] = set()
        if not full:  # ports of a VPC whose bridge is made in this pass are plugged again
            trusted = {p.port_id for p in ports if host_device(p) in devices and vpcs[p.vpc_id].vni in built
                       and self._settled.get(p.port_id) == _fingerprint(p, vpcs[p.vpc_id])}
        self._settled = {p.port_id: seen for p in ports if (seen := self._settled.get(p.port_id))}

        trusting = not full and not removed
        failed_vpcs: dict[str, str] = {}
        for vpc in doc.vpcs:
            check()
            before = len(step.errors)
            if not self._layer2(vpc, step, trusting, built=vpc.vni in built):
                failed_vpcs[vpc.vpc_id] = step.errors[before] if len(step.errors) > before else "failed"
        check()
        self._vpcs_settled = {vpc_id: seen for vpc_id, seen in self._vpcs_settled.items() if vpc_id in vpcs}
        self._legs_plugged &= set(vpcs)
        started = time.monotonic()
        statuses = [self._port(port, vpcs[port.vpc_id], failed_vpcs, step.changes, port.port_id in trusted)
                    for port in ports]
        step.took("ports", started)
        for vpc in doc.vpcs:  # after the ports: a new port's layer 2 traffic need not wait for its router
            local = [p for p in ports if p.vpc_id == vpc.vpc_id]
            before = len(step.errors)
            if vpc.vpc_id not in failed_vpcs and not self._router(vpc, local, step, trusting, vpc.vni in built):
                why = step.errors[before] if len(step.errors) > before else "failed"
                ids = {p.port_id for p in local}
                statuses = [self._unready(s, why) if s.port_id in ids else s for s in statuses]
        step.errors.extend(s.error for s in statuses if s.state == "error")
        for vni in sorted((built | self.plane.routers()) - {v.vni for v in doc.vpcs}):
            attempt(f"remove router {vni}", partial(self.plane.remove_router, vni))
            attempt(f"remove vpc {vni}", partial(self.backend.remove_vpc, vni))
        attempt("peering", lambda: self.plane.ensure_peerings(doc))
        attempt("host nat", lambda: self.plane.ensure_host_nat(doc))
        reason = "; ".join(step.changes) or "no change"
        if step.errors:
            reason += "; errors: " + "; ".join(step.errors)
        self.last_phases = {phase: round(seconds, 4) for phase, seconds in step.phases.items()}
        return reason[:MAX_REASON], statuses

    def _layer2(self, vpc: Vpc, step: _Pass, trusting: bool, built: bool) -> bool:
        """The VPC's bridge, tunnels and forwarding entries (the backend's). ``trusting`` (a pass for a new
        document that removed nothing) with the VPC's bridge there (``built``): trusted if the VPC's layer-2
        view is what it was when this process last set it up."""
        seen = _vpc_fingerprint(vpc, self.vtep)
        settled = trusting and built and self._vpcs_settled.get(vpc.vpc_id) == seen
        self._vpcs_settled.pop(vpc.vpc_id, None)
        if not settled and not step.attempt(f"vpc {vpc.vpc_id}", partial(self.backend.ensure_vpc, vpc, self.vtep)):
            return False
        self._vpcs_settled[vpc.vpc_id] = seen
        return True

    def _router(self, vpc: Vpc, local: list[Port], step: _Pass, trusting: bool, built: bool) -> bool:
        """The VPC's router and its leg into the bridge; a trusting pass plugs the leg only when it is new."""
        plugged = trusting and built and vpc.vpc_id in self._legs_plugged
        self._legs_plugged.discard(vpc.vpc_id)
        if not step.attempt(f"router {vpc.vpc_id}", partial(self.plane.ensure_router, vpc, local)):
            return False
        replaced = self.plane.leg_replaced(vpc.vni)
        if (not plugged or replaced) and not step.attempt(
                f"router leg {vpc.vpc_id}", partial(self.backend.plug, vpc.vni, vpc_names(vpc.vni).router_leg),
                phase="leg"):
            return False
        self._legs_plugged.add(vpc.vpc_id)
        return True

    def _unready(self, status: PortStatus, why: str) -> PortStatus:
        """A port whose VPC's router failed after the port was set up: an error, set up again next pass."""
        self._settled.pop(status.port_id, None)
        return PortStatus(status.port_id, "error", f"vpc not ready: {why}")

    def _port(self, port: Port, vpc: Vpc, failed_vpcs: dict[str, str], changes: list[str],
              trusted: bool) -> PortStatus:
        if port.vpc_id in failed_vpcs:
            self._settled.pop(port.port_id, None)
            return PortStatus(port.port_id, "error", f"vpc not ready: {failed_vpcs[port.vpc_id]}")
        if trusted:
            return PortStatus(port.port_id, "active")
        self._settled.pop(port.port_id, None)
        try:
            changes.extend(self.plane.ensure_port(port, vpc.mtu))
            changes.extend(self.backend.plug_port(port, vpc.vni))
        except FAILURES as exc:
            return PortStatus(port.port_id, "error", str(exc))
        self._settled[port.port_id] = _fingerprint(port, vpc)
        return PortStatus(port.port_id, "active")

    def _remove_stale_ports(self, ports: list[Port], step: _Pass) -> set[str]:
        """Removes what belongs to no wanted port; returns the port devices that are left."""
        wanted_ids = {p.port_id for p in ports}
        wanted_devices = {host_device(p) for p in ports}
        for port_id in sorted(self._known - wanted_ids):
            step.attempt(f"unplug {port_id}", partial(self.backend.unplug_port, port_id))
        present = self.plane.port_devices() | self.backend.plugged_ports()
        for device in sorted(present - wanted_devices):
            step.attempt(f"remove {device}", partial(self.plane.remove_port_device, device))
        self._save_known(wanted_ids)
        return present & wanted_devices


def _vpc_fingerprint(vpc: Vpc, vtep: str) -> str:
    """What a VPC's layer 2 and router leg depend on (its DNS records do not matter to them)."""
    return f"{vtep}/{vpc.model_dump_json(exclude={'dns_records'})}"


def _fingerprint(port: Port, vpc: Vpc) -> str:
    """Everything a port's set-up depends on: the port itself and its VPC's VNI and MTU."""
    return f"{vpc.vni}/{vpc.mtu}/{port.model_dump_json()}"
