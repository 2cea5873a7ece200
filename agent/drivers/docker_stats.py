"""Docker's stats document -> the driver contract's stats (cpu_percent, memory_bytes, memory_limit_bytes, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def from_docker(s: Mapping[str, Any]) -> dict[str, Any]:
    """cpu_percent, memory_bytes (without page cache, like `docker stats`), memory_limit_bytes, pids,
    net_rx_bytes and net_tx_bytes from one sample of docker's stats API (zeros for a stopped container)."""
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - (
        (pre.get("cpu_usage") or {}).get("total_usage") or 0
    )
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = cpu_delta / system_delta * online * 100.0 if cpu_delta > 0 and system_delta > 0 else 0.0

    mem = s.get("memory_stats") or {}
    mem_detail = mem.get("stats") or {}
    cache = mem_detail.get("total_inactive_file", mem_detail.get("inactive_file", 0)) or 0  # cgroup v1 / v2
    memory_bytes = max((mem.get("usage") or 0) - cache, 0)

    networks = (s.get("networks") or {}).values()
    return {
        "cpu_percent": round(cpu_percent, 3),
        "memory_bytes": int(memory_bytes),
        "memory_limit_bytes": int(mem.get("limit") or 0),
        "pids": int((s.get("pids_stats") or {}).get("current") or 0),
        "net_rx_bytes": sum(int(n.get("rx_bytes") or 0) for n in networks),
        "net_tx_bytes": sum(int(n.get("tx_bytes") or 0) for n in networks),
    }
