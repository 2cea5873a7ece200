"""Samples a controller with py-spy while load runs and summarises the hot spots.

py-spy runs with ``--gil``: it samples only the thread that holds the GIL, so the shares below are shares
of the interpreter's time (the resource every thread of a controller shares), and ``gil_busy_pct`` is how
much of the wall time some thread held the GIL. A blocking call that does not release the GIL (such as
``mmap.flush``, i.e. msync) shows up here; one that releases it does not.

py-spy is not a project dependency: it is looked up on PATH and in /tmp/benchtools (create that venv with
``python3 -m venv /tmp/benchtools && /tmp/benchtools/bin/pip install py-spy``). Without it, profiling is
skipped with a note.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tests.bench.report import info

TOOL_VENV = Path("/tmp/benchtools")

# Categories for self time, first match wins (matched against "function file", lower case).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("raft journal sync (msync)", ("resizablefile.flush", "filejournal.flush", "fsync", "fdatasync")),
    ("raft message encryption (Fernet)", ("encryptor.py", "fernet.py", "cryptography")),
    ("raft pickle/zlib", ("pickle", "zlib", "serializer.py")),
    ("raft transport/poller", ("tcp_connection.py", "tcp_server.py", "transport.py", "poller.py",
                               "pipe_notifier.py", "fast_queue.py")),
    ("raft core (pysyncobj)", ("pysyncobj",)),
    ("controller store (batcher, raft glue)", ("controller/store/",)),
    ("state machine apply", ("controller/state/",)),
    ("json", ("json/",)),
    ("pydantic", ("pydantic",)),
    ("authentication (key hash, JWT)", ("security/tokens.py", "hashlib", "jwt", "hmac")),
    ("request ids (uuid)", ("uuid.py",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("aiohttp", ("aiohttp", "multidict", "yarl")),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
    ("controller api/services", ("controller/",)),
    ("logging", ("logging/",)),
)
GENERIC_FRAMES = ("threading.py", "click/", "runpy", "asyncio/runners.py", "asyncio/base_events.py",
                  "controller/main.py", "controller/daemon.py", "<module>", "SyncObj._autoTickThread",
                  "SyncObj._onTick", "Handle._run")


def find_py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = TOOL_VENV / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else None


class Sampler:
    """``py-spy record --gil`` on one process in the background; ``finish()`` waits and summarises."""

    def __init__(self, py_spy: str, pid: int, seconds: int, rate: int = 250) -> None:
        fd, path = tempfile.mkstemp(prefix="bench-profile-", suffix=".speedscope.json")
        os.close(fd)
        self.output = Path(path)
        self.seconds = seconds
        cmd = [py_spy, "record", "--gil", "--nonblocking", "-r", str(rate), "-d", str(seconds), "-p", str(pid),
               "-o", path, "--format", "speedscope"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, timeout: float = 60) -> dict[str, Any] | None:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            info("py-spy did not finish in time")
            return None
        try:
            if self.proc.returncode != 0 or self.output.stat().st_size == 0:
                info(f"py-spy failed (exit {self.proc.returncode}): {err.decode(errors='replace')[-500:]}")
                return None
            return summarise(json.loads(self.output.read_text()), self.seconds)
        finally:
            self.output.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.output.unlink(missing_ok=True)


def _short(file: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def summarise(doc: dict[str, Any], seconds: float, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares per function, per thread and per category (of the GIL-holding samples)."""
    frames = doc["shared"]["frames"]
    labels = [f"{f['name']} ({_short(f.get('file', '?'))})" for f in frames]
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    weight_sum = 0.0
    for profile in doc["profiles"]:
        weights = profile.get("weights") or [1] * len(profile["samples"])
        unit = profile.get("unit", "seconds")
        for stack, weight in zip(profile["samples"], weights, strict=False):
            if not stack:
                continue
            weight_sum += weight if unit == "seconds" else 0.0
            threads[_thread_name(profile.get("name", "?"))] += weight
            leaf = labels[stack[-1]]
            self_time[leaf] += weight
            categories[_category(leaf)] += weight
            for label in {labels[i] for i in stack}:
                total_time[label] += weight
    total = sum(threads.values())

    def shares(counter: Counter[str], n: int, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        rows = [(k, v) for k, v in counter.most_common() if not any(s in k for s in skip)][:n]
        return [{"name": k, "pct": round(100 * v / total, 1)} for k, v in rows] if total else []

    return {"mode": "gil", "gil_busy_pct": round(100 * weight_sum / seconds, 1) if weight_sum else None,
            "threads": shares(threads, 5), "categories": shares(categories, len(CATEGORIES) + 1),
            "self": shares(self_time, top), "inclusive": shares(total_time, top, GENERIC_FRAMES)}


def _thread_name(name: str) -> str:
    # py-spy names profiles like 'Process 123 Thread 456 "MainThread"'.
    return name.split('"')[1] if '"' in name else name


def _category(label: str) -> str:
    lowered = label.lower()
    for category, needles in CATEGORIES:
        if any(n in lowered for n in needles):
            return category
    return "other"
