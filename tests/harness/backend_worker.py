"""Drives one network backend object from a test, inside a simulated host's namespace.

Run as ``nsenter --net=NS python -m tests.harness.backend_worker BACKEND KWARGS_JSON``; reads one JSON call
per line on stdin (``{"method": ..., "args": [...]}``, a Vpc or Port as its model dict) and answers one JSON
line (``{"result": ...}`` or ``{"error": "Type: message"}``). ``BackendProcess`` is the test side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.netmodel import Port, Vpc

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, kwargs: dict[str, Any]) -> Any:
    if name == "ovs":
        from netd.backends.ovs import OvsBackend

        return OvsBackend(**kwargs)
    from netd.backends import load_backend

    return load_backend(name)


def _args(method: str, args: list[Any]) -> list[Any]:
    if method == "ensure_vpc":
        return [Vpc.model_validate(args[0]), *args[1:]]
    if method in ("plug_port", "firewall_bridge"):
        return [Port.model_validate(args[0]), *args[1:]]
    return args


def main() -> None:
    backend = _load(sys.argv[1], json.loads(sys.argv[2]))
    for line in sys.stdin:
        call = json.loads(line)
        try:
            result = getattr(backend, call["method"])(*_args(call["method"], call["args"]))
            if isinstance(result, set):
                result = sorted(result)
            answer: dict[str, Any] = {"result": result}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    backend.close()


class BackendProcess:
    """A backend object living in ``ns_path``; ``call`` raises RuntimeError with the backend's error."""

    def __init__(self, ns_path: str, backend: str, **kwargs: Any) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={ns_path}", sys.executable, "-m", "tests.harness.backend_worker", backend,
             json.dumps(kwargs)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, method: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        wire = [a.model_dump() if isinstance(a, Vpc | Port) else a for a in args]
        self.proc.stdin.write(json.dumps({"method": method, "args": wire}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"backend worker exited ({self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    main()
