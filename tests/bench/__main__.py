"""``python -m tests.bench [--quick]``: the controller benchmarks. See tests/bench/__init__.py."""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
from multiprocessing.pool import Pool
from typing import Any

from tests.bench import api_latency, compute_sim, failover, net, report, volumes
from tests.bench import s3 as s3_bench
from tests.bench.api_latency import LoadPlan, Phase
from tests.bench.procs import CpuWindow, background_cpu_pct, bench_cluster
from tests.bench.profile import find_py_spy
from tests.bench.report import emit, info
from tests.harness.controllers import ControllerCluster, ControllerNode

RETRY_BUDGET_S = 150.0  # no noisy-phase re-runs after this much time (keeps the full run under 5 minutes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short phases, no profiling: a smoke run in about a minute")
    p.add_argument("--clients", type=int, default=64, help="concurrent API clients (default 64)")
    p.add_argument("--client-procs", type=int, default=2,
                   help="processes the load generator's clients are spread over (default 2)")
    p.add_argument("--duration", type=float, help="measured seconds per phase (default 10, quick 2.5)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per phase (default 2, quick 0.5)")
    p.add_argument("--ops", default="get,get_stale,post", help="comma-separated subset of get,get_stale,post")
    p.add_argument("--paced-read-rate", type=float, default=500.0,
                   help="total requests/s of the paced read phases (0 skips them; default 500)")
    p.add_argument("--paced-write-rate", type=float, default=250.0,
                   help="total requests/s of the paced write phase (0 skips it; default 250)")
    p.add_argument("--only", choices=("latency", "failover", "compute", "volumes", "s3", "net"),
                   help="run one part only")
    p.add_argument("--failover-rounds", type=int, default=3, help="leader kills (default 3)")
    p.add_argument("--hosts", help="compute: comma-separated fleet sizes (default 1000,10000; quick 1000)")
    p.add_argument("--launches", type=int, help="compute: docker launches (default 20, quick 5)")
    p.add_argument("--profile", choices=("auto", "always", "never"),
                   help="sample controllers with py-spy: auto = when a latency goal is missed and py-spy is "
                        "installed (default; never with --quick)")
    p.add_argument("--noisy-pct", type=float, default=30.0,
                   help="a phase during which other processes used more CPU (%% of one core) is noisy")
    p.add_argument("--retries", type=int, help="re-runs of a noisy phase (default 1, quick 0)")
    p.add_argument("--quiet-wait", type=float, default=0.0,
                   help="before each phase, wait up to this many seconds for other processes to go idle")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    duration = args.duration if args.duration is not None else (2.5 if quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    retries = args.retries if args.retries is not None else (0 if quick else 1)
    profile_mode = args.profile or ("never" if quick else "auto")
    plan = LoadPlan(clients=args.clients, client_procs=args.client_procs, warmup=warmup, duration=duration,
                    quiet_wait=args.quiet_wait)
    ops = tuple(o for o in args.ops.split(",") if o)
    unknown = set(ops) - set(api_latency.OP_LABEL)
    if unknown:
        print(f"unknown --ops: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.monotonic()
    emit({"bench": "environment", "cpus": multiprocessing.cpu_count(), "python": sys.version.split()[0],
          "background_cpu_pct": background_cpu_pct(1.0), "quick": quick, "clients": args.clients,
          "client_procs": args.client_procs, "duration_s": duration, "warmup_s": warmup})
    try:
        if args.only in (None, "latency", "failover"):
            pool = multiprocessing.get_context("spawn").Pool(max(1, args.client_procs))
            try:
                _controller_benches(args, quick, plan, ops, retries, profile_mode, started, pool)
            finally:
                pool.terminate()
                pool.join()
        if args.only in (None, "compute"):
            compute_sim.run(_sim_plan(args, quick))
        if args.only in (None, "volumes"):
            volumes.run(quick)
        if args.only in (None, "s3"):
            s3_bench.run(quick)
        if args.only in (None, "net"):
            net.run(quick)
    except KeyboardInterrupt:
        info("interrupted")
        return 130
    emit(summary(time.monotonic() - started))
    return 0


def _sim_plan(args: argparse.Namespace, quick: bool) -> compute_sim.SimPlan:
    plan = compute_sim.SimPlan.quick() if quick else compute_sim.SimPlan()
    if args.hosts:
        plan = dataclasses.replace(plan, fleets=tuple(int(n) for n in args.hosts.split(",") if n))
    if args.launches is not None:
        plan = dataclasses.replace(plan, launches=args.launches)
    return plan


def _controller_benches(args: argparse.Namespace, quick: bool, plan: LoadPlan, ops: tuple[str, ...], retries: int,
                        profile_mode: str, started: float, pool: Pool) -> None:
    """API latency and failover, on a cluster of their own."""
    with bench_cluster(3) as cluster:
        leader = cluster.wait_leader(timeout=30)
        key = cluster.admin_key()
        info(f"leader is {leader.name} ({leader.url})")
        names = api_latency.prepare(leader, key)
        emit(idle_cpu(cluster, 2.0 if quick else 3.0))
        latency: list[dict[str, Any]] = []
        if args.only in (None, "latency"):
            def may_retry() -> bool:
                return time.monotonic() - started < RETRY_BUDGET_S

            for phase in api_latency.phases(plan, ops, args.paced_read_rate, args.paced_write_rate):
                leader = cluster.wait_leader(timeout=30)  # a phase may have moved the leadership
                latency.append(api_latency.run_phase(pool, cluster, leader, key, names, phase,
                                                     args.noisy_pct, retries, may_retry))
            _profile(profile_mode, latency, pool, cluster, cluster.wait_leader(timeout=30), key, names, plan,
                     ops)
        if args.only in (None, "failover") and args.failover_rounds > 0:
            failover.run(cluster, key, args.failover_rounds, quick=quick)


def _profile(mode: str, latency: list[dict[str, Any]], pool: Pool, cluster: ControllerCluster,
             leader: ControllerNode, key: str, names: list[str], plan: LoadPlan, ops: tuple[str, ...]) -> None:
    missed = [r for r in latency if not r["met"]]
    if mode == "never" or (mode == "auto" and not missed):
        return
    py_spy = find_py_spy()
    if py_spy is None:
        info("py-spy not found (see tests/bench/profile.py): skipping the profile")
        return
    short = LoadPlan(plan.clients, plan.client_procs, warmup=1.0, duration=6.0)
    for op in ops:
        if mode == "always" or any(r["op"] == api_latency.OP_LABEL[op] for r in missed):
            api_latency.profile_phase(pool, cluster, leader, key, names, Phase(op, "spread", short), py_spy)


def idle_cpu(cluster: ControllerCluster, seconds: float) -> dict[str, Any]:
    """What the controllers cost while nobody calls them (tick thread, heartbeats, duties)."""
    cpu = CpuWindow(cluster.alive)
    cpu.start()
    time.sleep(seconds)
    cpu.stop()
    return {"bench": "idle_cpu", "seconds": seconds, "controller_cpu_pct": cpu.node_pct,
            "machine_cpu_pct": cpu.machine_pct}


def summary(elapsed: float) -> dict[str, Any]:
    """One line: each goal, the worst figure that decides it, and whether it is met."""
    lat = [r for r in report.RESULTS if r["bench"] == "api_latency"]
    goals: list[dict[str, Any]] = []
    for consistency, op_prefix, goal_name in (("linearizable", "GET", "read p95 < 5 ms"),
                                              ("stale", "GET", "stale read p95 < 5 ms"),
                                              ("linearizable", "POST", "write p95 < 10 ms")):
        for load, how in (("closed", "64 clients, closed loop"), ("paced", "64 clients, paced"),
                          ("single", "1 client")):
            rows = [r for r in lat if r["consistency"] == consistency and r["op"].startswith(op_prefix)
                    and r["load"] == load]
            if rows:
                goals.append({"goal": f"{goal_name} ({how})",
                              "worst_p95_ms": max((r["p95_ms"] or float("inf")) for r in rows),
                              "met": all(r["met"] for r in rows)})
    fo = [r for r in report.RESULTS if r["bench"] == "failover_summary"]
    if fo:
        goals.append({"goal": "failover < 2 s with 0 lost writes", "max_failover_s": fo[-1]["max_failover_s"],
                      "lost": fo[-1]["lost"], "met": fo[-1]["met"]})
    goals += compute_goals(report.RESULTS)
    goals += s3_bench.goals(report.RESULTS)
    goals += net.goals(report.RESULTS)
    return {"bench": "summary", "elapsed_s": round(elapsed, 1), "goals": goals,
            "all_met": all(g["met"] for g in goals if g["met"] is not None)}


def compute_goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compute goals, judged at the largest fleet that was measured."""
    goals: list[dict[str, Any]] = []
    placement = [r for r in results if r["bench"] == "compute_placement" and not r["hosts_react"]]
    if placement:
        hosts = max(r["hosts"] for r in placement)
        best = max((r for r in placement if r["hosts"] == hosts), key=lambda r: r["placements_per_s"])
        goal = {"goal": f">= {compute_sim.PLACEMENT_GOAL_PER_S:.0f} placements/s at {compute_sim.GOAL_HOSTS} hosts "
                        f"(measured at {hosts})",
                "placements_per_s": best["placements_per_s"], "mode": best["mode"], "p99_ms": best["p99_ms"],
                "met": best["met"]}
        loop = [r for r in results if r["bench"] == "compute_placement" and r["hosts_react"]]
        if loop:  # the same with the hosts running and reporting what they get (measured once, on fewer hosts)
            goal["with_hosts_reacting"] = {"hosts": loop[-1]["hosts"], "placements_per_s": loop[-1]["placements_per_s"]}
        goals.append(goal)
    beats = [r for r in results if r["bench"] == "compute_heartbeats"]
    if beats:
        top = max(beats, key=lambda r: r["hosts"])
        goals.append({"goal": f"leader < one core while {compute_sim.GOAL_HOSTS} hosts heartbeat every "
                              f"{top['interval_s']:.0f} s (measured with {top['hosts']})",
                      "leader_cpu_pct": top["leader_cpu_pct"], "met": top["met"]})
    launch = [r for r in results if r["bench"] == "compute_launch"]
    if launch:
        goals.append({"goal": "docker launch p50 < 1 s (API create -> running)", "p50_ms": launch[-1].get("p50_ms"),
                      "met": launch[-1]["met"]})
    return goals


if __name__ == "__main__":
    sys.exit(main())
