"""``python -m tests.bench --only net``: thecloud-netd's data plane, per backend (linuxbridge, ovs).

1. Port plumb time p50/p95 over >= 30 new ports, from the moment the desired state changes until a ping
   from an existing instance's namespace to the new one is answered:
   (a) ``spec file``: netd alone on simulated hosts (tests/bench/net_dataplane.py), the data-plane cost;
       half the new ports next to the prober, half on the other host (over VXLAN);
   (b) ``controller``: API create -> Raft -> netd's long-poll -> plumb -> traffic, per backend
       (tests/bench/net_controller.py). Goal: p95 < 200 ms.
2. TCP throughput with iperf3 between instances on two simulated hosts over VXLAN, next to a plain veth
   between two namespaces (the ceiling of this machine).
3. Security-group rule latency with 1,000 rules on a port: a new rule -> a new TCP connection succeeds,
   the rule removed -> new connections are refused; and how long netd's pass with that ruleset takes.

Every figure is a JSON line on stdout (``"bench": "net_*"``); a table per backend goes to stderr. Nothing
here asserts on time. ``--quick``: fewer ports and runs, 2 s iperf3 runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.bench import net_controller, net_dataplane
from tests.bench.report import emit, info, ms, percentile

REPO = Path(__file__).resolve().parents[2]
GOAL_MS = 200.0
BACKENDS = ("linuxbridge", "ovs")
TOOLS = ("ip", "nft", "nsenter", "unshare", "dnsmasq", "ss", "iperf3")


def why_not(backend: str) -> str | None:
    """Why ``backend`` cannot be measured on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/services/all.sh, packages.sh iperf3)"
    if backend == "ovs":
        from tests.harness.ovs import skip_reason

        return skip_reason()
    return None


def _install_iperf3() -> None:
    if shutil.which("iperf3") is None and os.geteuid() == 0:
        info("net: installing iperf3 (scripts/services/packages.sh)")
        subprocess.run([str(REPO / "scripts" / "services" / "packages.sh"), "iperf3"], check=False,
                       stdout=subprocess.DEVNULL)


def run(quick: bool = False) -> list[dict[str, Any]]:
    _install_iperf3()
    ports = 8 if quick else 30
    seconds = 2.0 if quick else 5.0
    runs = 2 if quick else 5
    records: list[dict[str, Any]] = []
    reason = why_not("linuxbridge")
    raw = None if reason else net_dataplane.raw_veth(seconds)
    for backend in BACKENDS:
        reason = why_not(backend)
        if reason:
            info(f"net: skipping {backend}: {reason}")
            records.append({"bench": "net_plumb", "backend": backend, "path": "spec file", "skipped": reason})
            continue
        info(f"net: {backend}: {ports} ports, iperf3 {seconds:g} s, {runs} rule changes")
        with net_dataplane.simulated(backend) as sim:
            plumbed = net_dataplane.plumb(sim, ports)
            flow = net_dataplane.throughput(sim, seconds)
            rules = net_dataplane.rules(sim, runs)
        records += [_plumb_record(backend, "spec file", plumbed),
                    {"bench": "net_throughput", "backend": backend, **flow, "raw_veth_gbit_s": raw},
                    {"bench": "net_rules", "backend": backend, **rules}]
        info(f"net: {backend} through the controller: {ports} instances")
        records.append(_controller_record(backend, net_controller.plumb(ports, backend)))
    for record in records:
        emit(record)
    for backend in BACKENDS:
        print_table(backend, [r for r in records if r.get("backend") == backend])
    return records


def _plumb_record(backend: str, path: str, plumbed: dict[str, Any]) -> dict[str, Any]:
    p95 = plumbed["all"]["p95_ms"]
    return {"bench": "net_plumb", "backend": backend, "path": path, **plumbed,
            "met": p95 is not None and p95 < GOAL_MS}


def _controller_record(backend: str, measured: dict[str, list[float]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, Any]:
        ordered = sorted(values)
        return {"n": len(ordered), "p50_ms": ms(percentile(ordered, 50)), "p95_ms": ms(percentile(ordered, 95)),
                "max_ms": ms(ordered[-1]) if ordered else None}

    return _plumb_record(backend, "controller", {
        "ports": len(measured["from_api"]), "all": stats(measured["from_api"]),
        "from_report": stats(measured["from_report"]), "netd_pass": stats(measured["netd_pass"])})


def print_table(backend: str, records: list[dict[str, Any]]) -> None:
    """A human-readable summary of one backend's figures on stderr."""
    lines = [f"netd {backend}", f"  {'figure':<74} {'p50':>9} {'p95':>9}"]

    def row(label: str, p50: Any, p95: Any = "", unit: str = "ms") -> None:
        p50s = "-" if p50 is None else f"{p50}{unit}"
        p95s = "" if p95 == "" else ("-" if p95 is None else f"{p95}{unit}")
        lines.append(f"  {label:<74} {p50s:>9} {p95s:>9}")

    for record in records:
        kind = record["bench"]
        if "skipped" in record:
            lines.append(f"  skipped: {record['skipped']}")
        elif kind == "net_plumb":
            verdict = "met" if record["met"] else "MISSED"
            head = ("API create -> traffic" if record["path"] == "controller" else "document on disk -> traffic")
            row(f"plumb ({record['path']}) {head}, {record['ports']} ports [goal p95 < {GOAL_MS:.0f} ms: "
                f"{verdict}]", record["all"]["p50_ms"], record["all"]["p95_ms"])
            for key, label in (("same_host", "  new port on the prober's host"),
                               ("other_host", "  new port on the other host (VXLAN)"),
                               ("from_report", "  namespace report -> traffic"),
                               ("netd_pass", "  netd pass")):
                if key in record:
                    row(label, record[key]["p50_ms"], record[key]["p95_ms"])
        elif kind == "net_throughput":
            row(f"iperf3 TCP across hosts over VXLAN (MTU {record['mtu']})", record["vxlan_gbit_s"], unit=" Gb/s")
            row("iperf3 TCP veth to veth, same machine (context)", record["raw_veth_gbit_s"], unit=" Gb/s")
        elif kind == "net_rules":
            row(f"rule added -> new connection accepted ({record['rules']} rules)", record["add"]["p50_ms"],
                record["add"]["p95_ms"])
            row("rule removed -> new connections refused", record["remove"]["p50_ms"], record["remove"]["p95_ms"])
            row(f"netd pass applying the {record['rules']}-rule ruleset", record["netd_pass"]["p50_ms"],
                record["netd_pass"]["p95_ms"])
    info("\n" + "\n".join(lines))


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plumb goal, per backend and path that was measured."""
    return [{"goal": f"port plumb p95 < {GOAL_MS:.0f} ms ({r['backend']}, {r['path']})",
             "p95_ms": r["all"]["p95_ms"], "met": r["met"]}
            for r in results if r["bench"] == "net_plumb" and "skipped" not in r]


if __name__ == "__main__":
    run()
