"""The Debian 12 image with systemd as PID 1 that simulated bare-metal hosts boot from.

``ensure_image()`` returns ``local/bookworm-systemd:<tag>``, building it at most once per machine: the tag is a
hash of the package list and the recipe, the customised rootfs is kept as a tarball in /var/cache/thecloud-tests
(so a pruned docker image is re-imported in seconds, not re-bootstrapped; built with mmdebstrap from the
machine's own Debian mirror), and a file lock keeps two pytest
workers from building at once. The image carries everything the daemons need on a bare host (HOST-NOTES.md:
the hosts have no internet, so Ansible's ``apt`` tasks must find their packages installed), but no docker.io or
libvirt: agents in simulated hosts use the ``fake`` driver.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("THECLOUD_TEST_CACHE", "/var/cache/thecloud-tests"))
IMAGE_REPO = "local/bookworm-systemd"
SUITE = "bookworm"
# Merges /usr the way debootstrap does, instead of through the usrmerge package (which pulls in perl: +50 MB).
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
RECIPE_VERSION = 3
# Boot and access (HOST-NOTES recipe), Ansible's needs on the target (python3-apt for the apt module, openssl
# for certificates), then what docs/install.md lists per daemon (netd, storaged's file/btrfs backends).
PACKAGES = (
    "python3", "python3-venv", "python3-apt", "openssh-server", "systemd", "systemd-sysv", "dbus", "iproute2",
    "iputils-ping", "sudo", "procps", "openssl", "ca-certificates", "curl",
    "nftables", "dnsmasq-base", "util-linux", "qemu-utils", "btrfs-progs",
)
# ssh-keygen -A before Debian's `sshd -t` check: every host gets its own host keys on first boot.
SSH_DROPIN = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
# Units that only make sense on real hardware or a real console, and fail or hang in a container.
MASKED_UNITS = (
    "getty@tty1.service", "serial-getty@.service", "console-getty.service", "systemd-remount-fs.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount", "systemd-modules-load.service",
    "e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer", "apt-daily-upgrade.timer",
    "fstrim.timer", "systemd-firstboot.service",
)


def image_tag() -> str:
    """Hash of everything that shapes the image; a change to any of it builds a new image."""
    recipe = "\n".join([str(RECIPE_VERSION), SUITE, *PACKAGES, SSH_DROPIN, *MASKED_UNITS])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def image_name() -> str:
    return f"{IMAGE_REPO}:{image_tag()}"


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The first ``URIs:`` of the machine's own deb822 sources (the mirror it is allowed to reach)."""
    if sources.is_file():
        for line in sources.read_text().splitlines():
            match = re.match(r"\s*URIs:\s*(\S+)", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


def _run(cmd: list[str], timeout: float, stdin: IO[bytes] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, stdin=stdin)
    if result.returncode != 0:
        out = (result.stdout[-2000:] + result.stderr[-3000:]).decode(errors="replace")
        raise RuntimeError(f"{cmd[0]} failed (exit {result.returncode}): {out}")


def _customise(root: Path) -> None:
    """Per-host identity removed (host keys, machine-id), container-hostile units masked, apt caches emptied."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "tc-hostkeys.conf").write_text(SSH_DROPIN)
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    (root / "etc/hostname").write_text("tc-simhost\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    # Root logs in with the harness key only (injected per container); no password login at all.
    (root / "etc/ssh/sshd_config.d/tc-harness.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    # The hosts have no internet: never let apt wait for a mirror, never install recommends behind our back.
    (root / "etc/apt/apt.conf.d/99tc-offline").write_text(
        'APT::Install-Recommends "false";\nAcquire::Retries "0";\nAcquire::http::Timeout "2";\n')
    _run(["chroot", str(root), "apt-get", "clean"], timeout=60)
    for path in (root / "var/cache/apt").glob("*.bin"):
        path.unlink()
    shutil.rmtree(root / "var/log/apt", ignore_errors=True)


def _bootstrap(tarball: Path) -> None:
    """mmdebstrap + customise into a temp dir next to the cache, then tar it (atomically) to ``tarball``.

    mmdebstrap rather than debootstrap: it installs through apt with dpkg's unsafe-io (no fsync per file), which
    takes ~35 s here where debootstrap takes ~110 s for the same packages, and resolves dependencies properly.
    """
    work = Path(tempfile.mkdtemp(prefix="tc-rootfs-", dir=CACHE_DIR))
    try:
        root = work / "root"
        started = time.monotonic()
        _run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              "--dpkgopt=force-unsafe-io", "--skip=cleanup/apt/lists", f"--hook-dir={MERGED_USR_HOOK}",
              SUITE, str(root), debian_mirror()],
             timeout=900)
        log.info("mmdebstrap took %.1f s", time.monotonic() - started)
        _customise(root)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import(tarball: Path, name: str) -> None:
    with open(tarball, "rb") as stream:
        _run(["docker", "import", "-c", 'CMD ["/sbin/init"]', "-c", "ENV container=docker", "-", name],
             timeout=300, stdin=stream)


def _remove_old_images(keep: str) -> None:
    """Images of earlier recipes; one still used by a container stays (docker refuses, which is fine)."""
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO],
                          capture_output=True, text=True, check=False).stdout.split()
    old = [tag for tag in tags if tag != keep]
    if old:
        subprocess.run(["docker", "rmi", *old], capture_output=True, check=False)


def ensure_image() -> str:
    """The image name, built or re-imported if missing. Raises RuntimeError with the failing step's output."""
    name = image_name()
    if _image_exists(name):
        return name
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "rootfs.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if _image_exists(name):
                return name
            tarball = CACHE_DIR / f"bookworm-systemd-{image_tag()}.tar"
            started = time.monotonic()
            if not tarball.is_file():
                for stale in CACHE_DIR.glob("bookworm-systemd-*.tar"):
                    stale.unlink()
                _bootstrap(tarball)
            _import(tarball, name)
            _remove_old_images(name)
            log.info("image %s ready in %.1f s", name, time.monotonic() - started)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return name
