"""Runs ``ansible-playbook``/``ansible`` from the venv and parses the PLAY RECAP (per-host ok/changed/failed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]

    def failed_hosts(self) -> list[str]:
        return sorted(h for h, c in self.recap.items() if c.get("failed", 0) or c.get("unreachable", 0))

    @property
    def ok(self) -> bool:
        """rc 0 and not one host failed or unreachable."""
        return self.rc == 0 and not self.failed_hosts()

    def tail(self, chars: int = 6000) -> str:
        """The end of the output, for assertion messages."""
        return self.stdout[-chars:] + ("\n--- stderr ---\n" + self.stderr[-2000:] if self.stderr.strip() else "")


def parse_recap(stdout: str) -> dict[str, dict[str, int]]:
    """``{host: {"ok": 3, "changed": 0, "unreachable": 0, "failed": 0, ...}}`` from the last PLAY RECAP."""
    start = stdout.rfind("PLAY RECAP")
    recap: dict[str, dict[str, int]] = {}
    if start < 0:
        return recap
    for line in stdout[start:].splitlines()[1:]:
        match = _RECAP_LINE.match(line.strip())
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in (kv.split("=") for kv in match.group(2).split())}
    return recap


def ansible_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Ansible here: UTF-8 locale (ansible-core requires it), pipelining (root, no sudo: it
    halves the SSH round trips), no colours or retry files, control sockets and temp files in the workdir."""
    venv_bin = str(Path(sys.executable).parent)
    (workdir / "cp").mkdir(exist_ok=True)
    (workdir / "ansible-tmp").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(workdir / "cp"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
    }
    env.update(extra or {})
    return env


def run_ansible(cmd: list[str], workdir: Path, extra_vars: dict[str, object] | None, timeout: float,
                env: dict[str, str] | None, cwd: Path) -> PlaybookResult:
    if extra_vars:
        cmd = [*cmd[:1], "--extra-vars", json.dumps(extra_vars), *cmd[1:]]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
                              env=ansible_env(workdir, env))
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise RuntimeError(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s; output so far:\n{out[-6000:]}") from e
    return PlaybookResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started,
                          parse_recap(proc.stdout))
