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

Flows are not persistent in OVS (a restarted ovs-vswitchd starts empty), so each sync compares the installed
flows of our cookie with the wanted set and replaces them atomically (``--bundle``) when they differ.
There are no OpenFlow bindings in the ``ovs`` package (ovsdbapp speaks OVSDB only), hence ``ovs-ofctl``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess

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
    argv = ["ovs-ofctl", "--no-names", *options, command, target, *args]
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,  # noqa: S603
                              timeout=OFCTL_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"ovs-ofctl {command}: {exc}") from exc
    if done.returncode != 0:
        raise BackendError(f"ovs-ofctl {command} {target}: {done.stderr.strip()[:300]}")
    return done.stdout


_VOLATILE = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def installed_digest(target: str) -> str:
    """A digest of the flows of our cookie now in the switch (counters and ages left out)."""
    dump = _ofctl("dump-flows", target, f"cookie={OWN_COOKIE:#x}/-1")
    lines = sorted(_VOLATILE.sub("", line).strip() for line in dump.splitlines()
                   if line.strip().startswith("cookie="))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def sync_flows(target: str, flows: list[str], recorded: str | None) -> str | None:
    """Makes the switch hold exactly ``flows`` (of our cookie); ``recorded`` is "<wanted>:<installed>" digests
    from the last sync. Returns the new record when it replaced the flows, None when they were right."""
    wanted = hashlib.sha256("\n".join(flows).encode()).hexdigest()
    installed = installed_digest(target)
    if recorded == f"{wanted}:{installed}":
        return None
    batch = [f"delete cookie={OWN_COOKIE:#x}/-1"] + [f"add {flow}" for flow in flows]
    _ofctl("add-flows", target, "-", options=("--bundle",), stdin="\n".join(batch) + "\n")
    return f"{wanted}:{installed_digest(target)}"
