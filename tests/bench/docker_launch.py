"""Docker launch latency: API create -> status "running", through a real agent with the docker driver.

The agent (tests.harness.agents) joins the benchmark's cluster in a zone of its own, so the instances land
on it; each instance (local/busybox, ``sleep``) is created with ``POST /v1/instances`` and ``GET
/v1/instances/{id}`` is polled every 10 ms until it is running. Launches are sequential; each instance is deleted
(and gone) before the next launch, so no removal runs meanwhile. Without docker (``ensure_docker`` fails) the figure is
skipped with the reason. Whatever else the cluster carries at that moment (the simulated fleet keeps
heartbeating) is part of the measurement.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.report import emit, info, ms, percentile
from tests.harness.agents import AgentNode
from tests.harness.controllers import ControllerCluster
from tests.harness.docker import DOCKER_IMAGE, ensure_docker

ZONE = "docker"
GOAL_P50_S = 1.0
POLL_S = 0.01
TIMEOUT_S = 30.0


def run(cluster: ControllerCluster, key: str, launches: int, workdir: Path) -> dict[str, Any] | None:
    try:
        ensure_docker()
    except RuntimeError as exc:
        info(f"docker is not available, skipping the launch latency: {str(exc)[-300:]}")
        emit({"bench": "compute_launch", "skipped": "docker is not available", "goal": "p50 < 1 s", "met": None})
        return None
    leader = cluster.wait_leader(timeout=30)
    workdir.mkdir(parents=True, exist_ok=True)
    agent = AgentNode("bench-docker", workdir, [n.agent_api for n in cluster.nodes], driver="docker")
    with httpx.Client(base_url=leader.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        token = api.post("/v1/hosts/tokens", json={"zone": ZONE}).raise_for_status().json()["token"]
        agent.join(leader.url, token, zone=ZONE)
        agent.start()
        try:
            _wait(lambda: api.get(f"/v1/hosts/{agent.name}").json().get("state") == "up", 30, "docker agent up")
            latencies: list[float] = []
            failures: list[str] = []
            for n in range(launches):
                name = f"launch-{int(time.time())}-{n}"
                seconds, failure = _launch(api, name)
                if failure:
                    failures.append(failure)
                else:
                    latencies.append(seconds)
                _delete(api, name)  # the test host has room for a few instances only (its real CPUs x 4)
            latencies.sort()
            p50 = percentile(latencies, 50)
            record = {"bench": "compute_launch", "driver": "docker", "image": DOCKER_IMAGE, "launches": launches,
                      "running": len(latencies), "p50_ms": ms(p50), "p95_ms": ms(percentile(latencies, 95)),
                      "max_ms": ms(latencies[-1]) if latencies else None, "failures": failures[:3],
                      "goal": "p50 < 1 s (API create -> running)", "met": bool(latencies) and p50 < GOAL_P50_S}
            emit(record)
            return record
        finally:
            agent.kill()
            _remove_containers(agent.host_id)


def _launch(api: httpx.Client, name: str) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    r = api.post("/v1/instances", json={"name": name, "image": DOCKER_IMAGE, "instance_type": "tiny", "zone": ZONE,
                                        "command": ["sleep", "3600"], "restart_policy": "never"})
    if r.status_code != 201:
        return 0.0, f"create {name}: {r.status_code} {r.text[:200]}"
    instance_id = r.json()["id"]
    deadline = t0 + TIMEOUT_S
    while time.perf_counter() < deadline:
        status = api.get(f"/v1/instances/{instance_id}").json()
        if status["status"] == "running":
            return time.perf_counter() - t0, None
        if status["status"] == "error":
            return 0.0, f"{name}: error: {status.get('status_reason')}"
        time.sleep(POLL_S)
    return 0.0, f"{name}: not running after {TIMEOUT_S:.0f}s"


def _delete(api: httpx.Client, name: str) -> None:
    """Deletes the instance and waits until its agent removed it (no removal overlaps the next launch)."""
    if api.delete(f"/v1/instances/{name}").status_code not in (204, 404):
        return
    _wait(lambda: api.get(f"/v1/instances/{name}").status_code == 404, TIMEOUT_S, f"{name} deleted")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _remove_containers(host_id: str) -> None:
    if not host_id:
        return
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=thecloud.host={host_id}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
