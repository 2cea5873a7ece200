"""The benchmark's controller cluster (real subprocesses in a temp dir) and CPU accounting from /proc."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tests.bench.report import info
from tests.harness.controllers import ControllerCluster, ControllerNode

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def bench_cluster(size: int = 3, extra_args: list[str] | None = None) -> Iterator[ControllerCluster]:
    """A started cluster with an agreed leader; every controller is killed and the temp dir removed on exit.

    ``extra_args`` are added to every controller's command line (e.g. ``--heartbeat-interval 5``).

    SIGTERM and SIGHUP are turned into KeyboardInterrupt so that cleanup also runs when the run is stopped;
    the controllers run in their own sessions, so only this code can stop them.
    """
    workdir = Path(tempfile.mkdtemp(prefix="thecloud-bench-"))
    cluster = ControllerCluster(workdir / "cluster", size)
    for node in cluster.nodes:
        node.extra_args = list(extra_args or [])
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    atexit.register(_kill_all, cluster)
    try:
        cluster.start()
        info(f"started {size} controllers in {workdir}")
        yield cluster
    finally:
        _kill_all(cluster)
        atexit.unregister(_kill_all)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(workdir, ignore_errors=True)
        info("controllers stopped, temp dir removed")


def _kill_all(cluster: ControllerCluster) -> None:
    for node in cluster.nodes:
        try:
            node.kill()
        except Exception as exc:  # keep killing the others
            info(f"could not kill {node.name}: {exc}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" the fields start at index 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU use of the controllers and of the whole machine between start() and stop().

    Percentages are of one core (the machine's figure goes up to 100 x cores).
    """

    nodes: list[ControllerNode]
    _t0: float = 0.0
    _node0: dict[str, float] | None = None
    _machine0: tuple[int, int] = (0, 0)
    node_pct: dict[str, float] | None = None
    machine_pct: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._node0 = {n.name: process_cpu_seconds(n.proc.pid) for n in self.nodes if n.proc is not None}
        self._machine0 = machine_busy_ticks()

    def stop(self) -> None:
        wall = time.monotonic() - self._t0
        assert self._node0 is not None
        self.node_pct = {}
        for n in self.nodes:
            if n.proc is not None and n.name in self._node0:
                used = process_cpu_seconds(n.proc.pid) - self._node0[n.name]
                self.node_pct[n.name] = round(100 * used / wall, 1)
        busy, total = machine_busy_ticks()
        dbusy, dtotal = busy - self._machine0[0], total - self._machine0[1]
        self.machine_pct = round(100 * CORES * dbusy / dtotal, 1) if dtotal else 0.0


def background_cpu_pct(seconds: float = 1.0) -> float:
    """Machine-wide CPU use (% of one core) over ``seconds``, measured while the benchmark itself is idle."""
    busy0, total0 = machine_busy_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_busy_ticks()
    return round(100 * CORES * (busy1 - busy0) / max(1, total1 - total0), 1)


def wait_quiet(max_wait: float, threshold: float = 30.0) -> float:
    """Waits (up to ``max_wait`` s) until the machine's CPU use outside our load is below ``threshold``%.

    Meant for shared machines, where other jobs distort the figures. Returns the last measured background.
    """
    deadline = time.monotonic() + max_wait
    while True:
        background = background_cpu_pct(1.0)
        if background < threshold or time.monotonic() >= deadline:
            return background
