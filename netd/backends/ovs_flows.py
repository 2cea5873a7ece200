"""The OpenFlow pipeline of a VPC's OVS bridge, and keeping it installed.

Why not ``NORMAL``: with a full mesh of VXLAN tunnels, NORMAL floods a broadcast from one tunnel into the
others (no split horizon), so three hosts loop it forever; and it would learn the VPC router's MAC (the same
on every host) on a tunnel port whenever another host's router sends. So the bridge runs in ``secure`` fail
mode with these flows (cookie ``OWN_COOKIE``), like Neutron's br-tun:

- table 0: from a tunnel -> table 3 marked ``reg0=1`` (never learned); from a local port -> learn
  "this MAC lives on this port" into table 3 (cookie ``LEARNED_COOKIE``, idle 300 s), then table 3.
- table 3: learned local MACs (priority 100); remote ports' MACs -> the tunnel to their host (priority 50,
  from the controller's document); a miss floods: from a local port to every other local port and every
  tunnel, from a tunnel to the local ports only (split horizon).

Flows are not persistent in OVS (a restarted ovs-vswitchd starts empty), so a verifying sync compares the
installed flows of our cookie with the wanted set and replaces them atomically (``--bundle``) when they differ.
Between verifying syncs (netd's passes for a new document, see ``Plane.begin_pass``) ``FlowSync`` trusts what
this process installed: no readback, and a change is only the difference (deleted and added flows, one bundle),
so plugging a port costs one ``ovs-ofctl`` run. There are no OpenFlow bindings in the ``ovs`` package
(ovsdbapp speaks OVSDB only), hence ``ovs-ofctl``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from netd.backends.base import BackendError

OWN_COOKIE = 0x7463
LEARNED_COOKIE = 0x7464
LEARN_IDLE_SECONDS = 300
OFCTL_SECONDS = 10.0
_LOCAL_OFPORT = 65534


def wanted_flows(tunnels: dict[str, int], locals_: list[int], fdb: dict[str, str]) -> list[str]:
    """Flows (ovs-ofctl syntax) for a bridge with ``tunnels`` (remote VTEP -> ofport), local ports and remote
    MACs (MAC -> VTEP). Deterministic: the same inputs give the same list."""
    cookie = f"cookie={OWN_COOKIE:#x}"
    local_ports = sorted(p for p in locals_ if 0 < p < _LOCAL_OFPORT)
    tunnel_ports = sorted(tunnels.values())
    flows = [f"{cookie},table=0,priority=100,in_port={port},actions=load:1->NXM_NX_REG0[],resubmit(,3)"
             for port in tunnel_ports]
    flows.append(f"{cookie},table=0,priority=10,actions=learn(table=3,priority=100,"
                 f"idle_timeout={LEARN_IDLE_SECONDS},cookie={LEARNED_COOKIE:#x},"
                 f"NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,3)")
    flows.append(f"{cookie},table=0,priority=0,actions=drop")
    for mac, vtep in sorted(fdb.items()):
        if vtep in tunnels:
            flows.append(f"{cookie},table=3,priority=50,dl_dst={mac.lower()},actions=output:{tunnels[vtep]}")
    to_locals = ",".join(f"output:{p}" for p in local_ports) or "drop"
    everywhere = ",".join(f"output:{p}" for p in local_ports + tunnel_ports) or "drop"
    flows.append(f"{cookie},table=3,priority=1,reg0=1,actions={to_locals}")
    flows.append(f"{cookie},table=3,priority=0,actions={everywhere}")
    return flows


def _ofctl(command: str, target: str, *args: str, options: tuple[str, ...] = (), stdin: str | None = None) -> str:
    return _ofctl_finish(_ofctl_start(command, target, *args, options=options, stdin=stdin), command, target)


def _ofctl_start(command: str, target: str, *args: str, options: tuple[str, ...] = (),
                 stdin: str | None = None) -> subprocess.Popen[str]:
    """Starts ``ovs-ofctl`` with its input written and closed already (it runs while the caller goes on)."""
    argv = ["ovs-ofctl", "--no-names", *options, command, target, *args]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise BackendError(f"ovs-ofctl {command}: {exc}") from exc
    assert proc.stdin is not None
    try:
        with proc.stdin:
            proc.stdin.write(stdin or "")
    except OSError:
        pass  # it exited early: _ofctl_finish reports why
    proc.stdin = None
    return proc


def _ofctl_finish(proc: subprocess.Popen[str], command: str, target: str) -> str:
    try:
        out, err = proc.communicate(timeout=OFCTL_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        proc.kill()
        proc.wait()
        raise BackendError(f"ovs-ofctl {command}: {exc}") from exc
    if proc.returncode != 0:
        raise BackendError(f"ovs-ofctl {command} {target}: {err.strip()[:300]}")
    return out


_VOLATILE = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def _installed_lines(target: str) -> list[str]:
    """The flows of our cookie now in the switch (counters and ages left out), sorted."""
    dump = _ofctl("dump-flows", target, f"cookie={OWN_COOKIE:#x}/-1")
    return sorted(_VOLATILE.sub("", line).strip() for line in dump.splitlines()
                  if line.strip().startswith("cookie="))


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def installed_digest(target: str) -> str:
    """A digest of the flows of our cookie now in the switch."""
    return _digest(_installed_lines(target))


def _match(flow: str) -> str:
    """A flow's table, priority and match without its cookie or actions (what ``delete_strict`` needs)."""
    fields = flow.split(",actions=", 1)[0]
    return fields.split(",", 1)[1] if fields.startswith("cookie=") else fields


def diff_batch(old: list[str], new: list[str]) -> list[str]:
    """``ovs-ofctl add-flows`` lines turning ``old`` into ``new``: strict deletes of the flows whose match is
    gone, then adds of the new or changed flows (an add replaces the flow with the same match)."""
    kept = {_match(flow) for flow in new}
    present = set(old)
    deletes = sorted({f"delete_strict cookie={OWN_COOKIE:#x}/-1,{_match(flow)}" for flow in old
                      if _match(flow) not in kept})
    return deletes + [f"add {flow}" for flow in new if flow not in present]


@dataclass
class _Installed:
    flows: list[str]
    verified: bool  # read back from the switch since they were installed


@dataclass
class SyncResult:
    changed: bool  # flows were installed
    record: str | None  # the bridge's new "<wanted>:<installed>" record to store, None: keep the stored one


class FlowSync:
    """Keeps the switch's flows of our cookie equal to the wanted ones, per OpenFlow target (bridge socket)."""

    def __init__(self) -> None:
        self._installed: dict[str, _Installed] = {}

    def forget(self, target: str) -> None:
        """The bridge was deleted or created: nothing is known to be installed on it."""
        self._installed.pop(target, None)

    def sync(self, target: str, flows: list[str], recorded: str | None, verify: bool) -> SyncResult:
        """``recorded``: "<wanted>:<installed>" digests the bridge carries from the last sync ("<wanted>:" after
        a trusting one); ``verify=False``: trust the flows this process installed on ``target`` (no readback)."""
        return self.start(target, flows, recorded, verify)()

    def start(self, target: str, flows: list[str], recorded: str | None,
              verify: bool) -> Callable[[], SyncResult]:
        """``sync`` in two halves: a trusting change starts ``ovs-ofctl`` and returns at once, and the returned
        call waits for it (the caller plugs devices meanwhile); anything else is done before returning."""
        known = self._installed.get(target)
        if not verify and known is not None:
            if known.flows == flows:
                return lambda: SyncResult(False, None)
            running = _ofctl_start("add-flows", target, "-", options=("--bundle",),
                                   stdin="\n".join(diff_batch(known.flows, flows)) + "\n")

            def finish() -> SyncResult:
                _ofctl_finish(running, "add-flows", target)
                self._installed[target] = _Installed(list(flows), verified=False)
                return SyncResult(True, f"{_digest(flows)}:")  # how the switch renders them: read at the next verify

            return finish
        result = self._sync_verified(target, flows, recorded, known)
        return lambda: result

    def _sync_verified(self, target: str, flows: list[str], recorded: str | None,
                       known: _Installed | None) -> SyncResult:
        wanted = _digest(flows)
        lines = _installed_lines(target)
        record = f"{wanted}:{_digest(lines)}"
        if recorded == record:
            self._installed[target] = _Installed(list(flows), verified=True)
            return SyncResult(False, None)
        trusted = recorded == f"{wanted}:" or (known is not None and not known.verified and known.flows == flows)
        if trusted and len(lines) == len(flows):
            # installed by a trusting sync (of this process or, per the record, of the one before a restart):
            # adopt the switch's rendering of them
            self._installed[target] = _Installed(list(flows), verified=True)
            return SyncResult(False, record)
        self._apply(target, [f"delete cookie={OWN_COOKIE:#x}/-1"] + [f"add {flow}" for flow in flows])
        self._installed[target] = _Installed(list(flows), verified=True)
        return SyncResult(True, f"{wanted}:{installed_digest(target)}")

    @staticmethod
    def _apply(target: str, batch: list[str]) -> None:
        if batch:
            _ofctl("add-flows", target, "-", options=("--bundle",), stdin="\n".join(batch) + "\n")
