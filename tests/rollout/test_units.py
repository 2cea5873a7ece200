"""The systemd units in systemd/: they verify cleanly, start the daemons' real command lines, and are hardened."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest

from tests.rollout.conftest import DAEMONS, PREFIX, REPO, UNIT_DIR

# Exposure scores `systemd-analyze security --offline=true` gives today (lower is better): a unit that
# loosens its hardening fails here; README.md's table shows the same numbers with the reasons.
MAX_EXPOSURE = {"controller": 2.0, "agent": 3.0, "netd": 5.5, "storaged": 4.9}


def _unit(daemon: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT_DIR / f"thecloud-{daemon}.service")
    return parser


def _verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_verifies_without_any_warning(unit_root: Path, daemon: str) -> None:
    result = _verify(unit_root, f"thecloud-{daemon}.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_is_strict_about_mistakes(unit_root: Path) -> None:
    """The check above would catch a typo: verify reports it on stderr (and still exits 0)."""
    broken = unit_root / "etc/systemd/system/tc-broken.service"
    broken.write_text(f"[Service]\nType=notify\nExecStart={PREFIX}/thecloud-agent run\nProtectSytem=strict\n")
    try:
        result = _verify(unit_root, "tc-broken.service")
    finally:
        broken.unlink()
    assert "ProtectSytem" in result.stderr


@pytest.mark.parametrize("daemon", DAEMONS)
def test_exposure_score(unit_root: Path, daemon: str) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={unit_root}", "--no-pager",
                             f"thecloud-{daemon}.service"], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE[daemon], match.group(0)
    readme = (UNIT_DIR / "README.md").read_text()
    assert f"| thecloud-{daemon} | {match.group(1)} {match.group(2)} |" in readme, "update systemd/README.md"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_runs_the_real_command_line(daemon: str) -> None:
    """Same entry point as make up (scripts/up.sh), installed in the documented prefix, settings from the
    daemon's environment file, notify readiness (shared/sdnotify.py), restart on failure."""
    service = _unit(daemon)["Service"]
    assert service["ExecStart"].split()[:2] == [f"{PREFIX}/thecloud-{daemon}", "run"]
    assert f'"$BIN/thecloud-{daemon}" run' in (REPO / "scripts/up.sh").read_text()
    assert service["EnvironmentFile"] == f"/etc/thecloud/{daemon}.env"
    assert (UNIT_DIR / "env" / f"{daemon}.env").is_file()
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"


def test_only_the_controller_drops_root_and_it_gets_no_capabilities() -> None:
    controller = _unit("controller")["Service"]
    assert controller["User"] == "thecloud"
    assert controller["CapabilityBoundingSet"] == ""
    assert controller["ProtectSystem"] == "strict"
    assert "u thecloud " in (UNIT_DIR / "sysusers.d/thecloud.conf").read_text()


def test_capabilities_are_the_documented_ones() -> None:
    caps = {d: set(_unit(d)["Service"].get("CapabilityBoundingSet", "ALL").split()) for d in DAEMONS}
    assert caps["netd"] == {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE",
                            "CAP_SETUID", "CAP_SETGID", "CAP_KILL"}
    assert caps["storaged"] == {"CAP_SYS_ADMIN", "CAP_IPC_LOCK", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"}
    assert caps["agent"] == {"CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_CHOWN", "CAP_FOWNER"}
    readme = (REPO / "README.md").read_text() + (UNIT_DIR / "README.md").read_text()
    for cap in set().union(*caps.values()):
        assert cap in readme, f"{cap} is not explained in systemd/README.md"


def test_env_files_only_name_settings_the_daemons_read() -> None:
    """Every THECLOUD_* in an example environment file is an envvar of that daemon's `run` (or its _ARGS)."""
    sources = {"controller": "controller/config.py", "agent": "agent/main.py", "netd": "netd/main.py",
               "storaged": "storaged/main.py storaged/volume_cli.py"}
    for daemon, files in sources.items():
        code = "".join((REPO / f).read_text() for f in files.split()).upper()
        text = (UNIT_DIR / "env" / f"{daemon}.env").read_text()
        for name in set(re.findall(r"^#? ?(THECLOUD_[A-Z0-9_]+)=", text, re.MULTILINE)):
            if name == f"THECLOUD_{daemon.upper()}_ARGS":
                continue
            short = name.removeprefix("THECLOUD_")
            assert name in code or (daemon == "controller" and f"{short}:" in code), f"{daemon}.env: {name}"
