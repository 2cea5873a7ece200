"""netd and storaged as real processes for a joined test host (they use the identity its agent got at join)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.controllers import REPO


def _controllers(agent_apis: list[str]) -> list[str]:
    return [arg for api in agent_apis for arg in ("--controller", api)]


def start_storaged(identity_dir: Path, agent_apis: list[str], data_dir: Path, pool: Path, s3_port: int,
                   log: Path) -> subprocess.Popen[bytes]:
    """storaged with the file backend in ``pool`` and S3 on 127.0.0.1:``s3_port``."""
    pool.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "storaged.main", "run", "--data-dir", str(data_dir), "--s3", f"127.0.0.1:{s3_port}",
           "--backend", "file", "--pool", str(pool), "--identity-dir", str(identity_dir), *_controllers(agent_apis)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def start_netd(identity_dir: Path, agent_apis: list[str], run_dir: Path, netns_dir: Path,
               log: Path) -> subprocess.Popen[bytes]:
    """netd (linuxbridge) in this machine's own namespace; ``run_dir`` must be reachable by dnsmasq (nobody)."""
    cmd = [sys.executable, "-m", "netd.main", "run", "--backend", "linuxbridge", "--vtep", "127.0.0.1",
           "--public-interface", "lo", "--identity-dir", str(identity_dir), "--run-dir", str(run_dir),
           "--netns-dir", str(netns_dir), "--resync-seconds", "2", *_controllers(agent_apis)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def unmount_below(directory: Path) -> None:
    """What a test's storaged or netd left mounted (volumes stay mounted across restarts by design; router
    namespaces are bind mounts)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1].startswith(str(directory)):
            subprocess.run(["umount", fields[1]], check=False)
