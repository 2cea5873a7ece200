"""Output: one JSON line per figure on stdout, progress on stderr, and small statistics helpers."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

_START = time.monotonic()
RESULTS: list[dict[str, Any]] = []


def info(message: str) -> None:
    print(f"[bench {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    """Prints one figure as a JSON line on stdout (and keeps it for the summary)."""
    RESULTS.append(record)
    print(json.dumps(record), flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(seconds: float) -> float | None:
    """Seconds to milliseconds rounded for display; None (JSON null) for NaN."""
    if math.isnan(seconds):
        return None
    return round(seconds * 1000, 2)
