"""What this host offers the scheduler (inventory) and what it uses right now (psutil)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class CapacityConfig:
    reserved_vcpus: int = 0
    reserved_memory_mb: int = 512
    reserved_disk_gb: int = 1
    cpu_allocation_ratio: float = 4.0
    memory_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    # operator overrides of the detected totals (also how tests build tight or huge fake hosts)
    totals: dict[str, int] = field(default_factory=dict)


def inventory(config: CapacityConfig, disk_path: str) -> dict[str, dict[str, Any]]:
    totals = {
        "vcpu": psutil.cpu_count() or 1,
        "memory_mb": psutil.virtual_memory().total // (1024 * 1024),
        "disk_gb": psutil.disk_usage(disk_path).total // (1024**3),
        **config.totals,
    }
    return {
        "vcpu": {"total": int(totals["vcpu"]), "reserved": config.reserved_vcpus,
                 "allocation_ratio": config.cpu_allocation_ratio},
        "memory_mb": {"total": int(totals["memory_mb"]), "reserved": config.reserved_memory_mb,
                      "allocation_ratio": config.memory_allocation_ratio},
        "disk_gb": {"total": int(totals["disk_gb"]), "reserved": config.reserved_disk_gb,
                    "allocation_ratio": config.disk_allocation_ratio},
    }


def usage(disk_path: str) -> dict[str, float]:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    return {"cpu_percent": psutil.cpu_percent(interval=None), "load1": psutil.getloadavg()[0],
            "memory_used_mb": (memory.total - memory.available) // (1024 * 1024),
            "disk_used_gb": round(disk.used / 1024**3, 1)}
