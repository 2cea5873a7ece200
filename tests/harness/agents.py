"""Real agent processes for tests: join with a token, run, kill -9, restart; optionally inside a netns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class AgentNode:
    name: str
    workdir: Path
    controllers: list[str]  # agent API endpoints HOST:PORT
    driver: str = "fake"
    listen_host: str = "127.0.0.1"
    listen_port: int = field(default_factory=free_port)
    netns: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    host_id: str = ""

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.name

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def join(self, api_url: str, token: str, zone: str | None = None) -> str:
        cmd = [sys.executable, "-m", "agent.main", "join", "--controller", api_url, "--token", token,
               "--data-dir", str(self.data_dir), "--name", self.name]
        if zone:
            cmd += ["--zone", zone]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        self.host_id = json.loads((self.data_dir / "identity.json").read_text())["host_id"]
        return self.host_id

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "agent.main", "run", "--data-dir", str(self.data_dir), "--driver", self.driver,
               "--listen", f"{self.listen_host}:{self.listen_port}"]
        for controller in self.controllers:
            cmd += ["--controller", controller]
        cmd += self.extra_args
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
