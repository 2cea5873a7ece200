"""ansible/ passes `ansible-playbook --syntax-check` (every playbook) and ansible-lint's production profile; both
checks fail on a broken copy, so a pass means something."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.ansible_run import ansible_env
from tests.rollout.conftest import REPO

pytestmark = pytest.mark.slow

ANSIBLE = REPO / "ansible"
PLAYBOOKS = ("site.yml", "rolling-upgrade.yml")
BIN = Path(sys.executable).parent
BROKEN_TASK = """
    - name: A command that always reports a change
      ansible.builtin.command: systemctl restart thecloud-agent
"""


def _run(tool: str, args: list[str], cwd: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    if not (BIN / tool).exists():
        pytest.fail(f"{tool} is missing from the venv: pip install -e '.[dev]' (ansible-core, ansible-lint)")
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False, env=ansible_env(workdir, {"ANSIBLE_CONFIG": str(cwd / "ansible.cfg")}))


def _syntax_check(playbook: str, cwd: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    return _run("ansible-playbook", ["--syntax-check", "-i", "inventory/example", "--vault-password-file",
                                     "inventory/example/vault-password.txt", playbook], cwd, workdir)


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    """ansible/ with site.yml's last play given a task that breaks the lint rules (command without
    changed_when, systemctl instead of the module), and rolling-upgrade.yml with a YAML error."""
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy)
    site = copy / "site.yml"
    site.write_text(site.read_text().rstrip("\n") + "\n  tasks:" + BROKEN_TASK)
    upgrade = copy / "rolling-upgrade.yml"
    upgrade.write_text(upgrade.read_text().replace("  serial: 1\n", "  serial: 1\n    bad_indent: true\n", 1))
    return copy


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check_passes(playbook: str, tmp_path: Path) -> None:
    result = _syntax_check(playbook, ANSIBLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_syntax_check_fails_on_a_broken_playbook(broken_copy: Path, tmp_path: Path) -> None:
    result = _syntax_check("rolling-upgrade.yml", broken_copy, tmp_path)
    assert result.returncode != 0 and "rolling-upgrade.yml" in result.stdout + result.stderr, result.stdout


def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    result = _run("ansible-lint", ["--profile", "production", "--offline"], ANSIBLE, tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


def test_ansible_lint_fails_on_a_broken_task(broken_copy: Path, tmp_path: Path) -> None:
    result = _run("ansible-lint", ["--profile", "production", "--offline", "site.yml"], broken_copy, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-5000:]
    assert "no-changed-when" in output and "command-instead-of-module" in output, output[-5000:]
