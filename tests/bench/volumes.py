"""Volume create and snapshot latency per backend, on real pools (tests.storage.pools): btrfs on a loop device,
file in a directory, lvm where device-mapper exists (else skipped with the reason). Figures only, no goals."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.report import emit, info, ms, percentile
from tests.storage.pools import backend_pool, why_not

SIZE_GB = 1.0


def run(quick: bool = False) -> list[dict[str, Any]]:
    count = 5 if quick else 20
    out = []
    for backend_name in ("btrfs", "file", "lvm"):
        for kind in ("filesystem", "block"):
            reason = why_not(backend_name)
            if reason:
                info(f"volumes: skipping {backend_name}: {reason}")
                record: dict[str, Any] = {"bench": "volume_latency", "backend": backend_name, "kind": kind,
                                          "skipped": reason}
            else:
                record = _measure(backend_name, kind, count)
            emit(record)
            out.append(record)
    return out


def _measure(backend_name: str, kind: str, count: int) -> dict[str, Any]:
    creates: list[float] = []
    snaps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-volumes-") as work, \
            backend_pool(backend_name, Path(work)) as backend:
        for n in range(count):
            t0 = time.perf_counter()
            backend.create(f"b{n}", SIZE_GB, kind)
            creates.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            backend.snapshot(f"b{n}", f"s{n}")
            snaps.append(time.perf_counter() - t0)
        for n in range(count):
            backend.delete_snapshot(f"s{n}")
            backend.delete(f"b{n}")
    creates.sort()
    snaps.sort()
    return {"bench": "volume_latency", "backend": backend_name, "kind": kind, "size_gb": SIZE_GB, "count": count,
            "create_p50_ms": ms(percentile(creates, 50)), "create_p95_ms": ms(percentile(creates, 95)),
            "snapshot_p50_ms": ms(percentile(snaps, 50)), "snapshot_p95_ms": ms(percentile(snaps, 95))}


if __name__ == "__main__":
    run()
