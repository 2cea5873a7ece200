"""Real controller processes for tests: start, kill -9, restart, wait for a leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.sdk import CloudClient
from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ControllerNode:
    name: str
    workdir: Path
    secret_file: Path
    api_port: int = field(default_factory=free_port)
    raft_port: int = field(default_factory=free_port)
    agent_api_port: int = field(default_factory=free_port)
    agent_api_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    peers: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.name / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / self.name / "controller.log"

    @property
    def admin_key_file(self) -> Path:
        return self.workdir / "admin.key"

    @property
    def api(self) -> str:
        return f"{self.api_host}:{self.api_port}"

    @property
    def raft(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def agent_api(self) -> str:
        return f"{self.agent_api_host}:{self.agent_api_port}"

    @property
    def url(self) -> str:
        return f"http://{self.api}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "controller.main", "run", "--data-dir", str(self.data_dir),
               "--api", self.api, "--raft", self.raft, "--cluster-secret-file", str(self.secret_file),
               "--admin-key-file", str(self.admin_key_file), "--agent-api", self.agent_api]
        for peer in self.peers:
            cmd += ["--peer", peer]
        return cmd + self.extra_args

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        (self.workdir / self.name).mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.url + "/v1/health", timeout=1.0)
            result: dict[str, Any] = r.json()
            return result
        except (httpx.HTTPError, ValueError):
            return None

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def client(self, api_key: str | None = None, **kw: Any) -> CloudClient:
        key = api_key if api_key is not None else self.admin_key_file.read_text().strip()
        return CloudClient(self.url, api_key=key, **kw)


class ControllerCluster:
    """N controllers on loopback sharing one cluster secret and one admin key file."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.secret_file = workdir / "cluster.secret"
        if not self.secret_file.exists():
            subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(self.secret_file)],
                           cwd=REPO, check=True, capture_output=True)
        self.nodes: list[ControllerNode] = [ControllerNode(f"c{i}", workdir, self.secret_file)
                                            for i in range(1, size + 1)]
        for node in self.nodes:
            node.peers = [n.raft for n in self.nodes if n is not node]

    def new_node(self, peers: list[str]) -> ControllerNode:
        node = ControllerNode(f"c{len(self.nodes) + 1}", self.workdir, self.secret_file, peers=peers)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    @property
    def alive(self) -> list[ControllerNode]:
        return [n for n in self.nodes if n.alive]

    def wait_leader(self, timeout: float = 20.0, among: list[ControllerNode] | None = None) -> ControllerNode:
        """The node that is leader and that every live node agrees on, with the admin key ready."""
        deadline = time.monotonic() + timeout
        nodes = among or self.alive
        while time.monotonic() < deadline:
            healths = {n.name: n.health() for n in nodes}
            leaders = [n for n in nodes if (healths[n.name] or {}).get("role") == "leader"]
            if len(leaders) == 1 and self.nodes[0].admin_key_file.exists():
                leader = leaders[0]
                if all((h or {}).get("leader_raft") == leader.raft for h in healths.values()):
                    return leader
            time.sleep(0.1)
        logs = "\n".join(f"--- {n.name}\n{n.log_text()[-3000:]}" for n in nodes)
        raise TimeoutError(f"no agreed leader within {timeout}s\n{logs}")

    def admin_key(self) -> str:
        return self.nodes[0].admin_key_file.read_text().strip()

    def followers(self, leader: ControllerNode) -> list[ControllerNode]:
        return [n for n in self.alive if n is not leader]
