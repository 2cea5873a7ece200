"""A tiny bootable test guest for the libvirt driver: a Debian kernel plus a busybox initramfs.

``build_guest()`` returns a :class:`Guest` (kernel, initrd, base image, kernel command line), built once and
cached under ``<repo>/.cache/guest`` (or ``~/.cache/thecloud/guest`` when the repository is not writable).
Only missing pieces are rebuilt; the initramfs is also rebuilt when :data:`GUEST_VERSION` changes.

The guest's /init (busybox sh as PID 1):
- loads the kernel modules it needs (virtio_pci, virtio_blk, isofs, ACPI button, evdev), copied from the
  extracted Debian package and inserted in dependency order (read from each module's .modinfo);
- mounts the NoCloud seed (an ISO9660 disk labelled ``cidata``: tries every /dev/vd* and /dev/sr*) and prints
  ``THECLOUD-USERDATA-BEGIN``, the user-data, ``THECLOUD-USERDATA-END`` to the serial console;
- prints ``THECLOUD-DISK-OK`` if the root overlay disk /dev/vda exists (``THECLOUD-DISK-MISSING`` if not);
- runs busybox acpid so that an ACPI power button press (a graceful libvirt shutdown) powers the guest off;
- prints ``THECLOUD-READY`` and sleeps forever.

Everything runs as root on a Debian-like host: the kernel comes from ``apt-get download`` of the package
that ``linux-image-<arch>`` depends on, busybox from ``busybox-static`` (installed with apt if missing).
The cache must be readable by the libvirt-qemu user (``~`` of root usually is not), hence the repo default.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST_VERSION = "3"  # bump when the initramfs contents change

BEGIN_MARKER = "THECLOUD-USERDATA-BEGIN"
END_MARKER = "THECLOUD-USERDATA-END"
DISK_OK_MARKER = "THECLOUD-DISK-OK"
READY_MARKER = "THECLOUD-READY"

# Modules the guest wants; whichever of them are built into the kernel are simply skipped.
WANTED_MODULES = ("virtio_pci", "virtio_blk", "isofs", "button", "evdev")
BASE_IMAGE_MB = 64
CMDLINE = "console=ttyS0 panic=-1 loglevel=4 nokaslr tsc=reliable no_timer_check"

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" 2>/dev/null || echo "thecloud-guest: insmod $m failed"
done
seed=""
i=0
while [ -z "$seed" ] && [ $i -lt 100 ]; do
  for dev in /dev/vd? /dev/sr?; do
    [ -b "$dev" ] || continue
    if mount -t iso9660 -o ro "$dev" /mnt 2>/dev/null; then
      if [ -f /mnt/user-data ]; then seed="$dev"; break; fi
      umount /mnt
    fi
  done
  [ -n "$seed" ] || { sleep 0.1; i=$((i+1)); }
done
if [ -n "$seed" ]; then
  echo "thecloud-guest: seed on $seed"
  echo "THECLOUD-USERDATA-BEGIN"
  cat /mnt/user-data
  echo ""
  echo "THECLOUD-USERDATA-END"
  umount /mnt
else
  echo "THECLOUD-NO-SEED"
fi
if [ -b /dev/vda ]; then echo "THECLOUD-DISK-OK"; else echo "THECLOUD-DISK-MISSING"; fi
acpid -c /etc/acpi -l /dev/null -p /run/acpid.pid
echo "THECLOUD-READY"
while true; do sleep 3600; done
"""

POWER_BUTTON_SCRIPT = "#!/bin/sh\necho thecloud-guest: power button, powering off\npoweroff -f\n"


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path
    base_image: Path
    cmdline: str = CMDLINE


def default_cache_dir() -> Path:
    repo_cache = REPO / ".cache" / "guest"
    try:
        repo_cache.mkdir(parents=True, exist_ok=True)
        if os.access(repo_cache, os.W_OK):
            return repo_cache
    except OSError:
        pass
    return Path.home() / ".cache" / "thecloud" / "guest"


def build_guest(cache_dir: Path | str | None = None) -> Guest:
    """The cached test guest, building whatever part of it is missing."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)  # qemu runs as libvirt-qemu and must read the files
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    guest = Guest(kernel=cache / "vmlinuz", initrd=cache / "initrd.img", base_image=cache / "base.qcow2")
    stamp = cache / "initrd.version"
    with _locked(cache / ".lock"):
        modules_dir = cache / "modules"
        if not guest.kernel.exists() or not modules_dir.is_dir():
            _fetch_kernel(cache)
        if not guest.initrd.exists() or not stamp.exists() or stamp.read_text().strip() != GUEST_VERSION:
            _build_initrd(modules_dir, guest.initrd)
            stamp.write_text(GUEST_VERSION + "\n")
        if not guest.base_image.exists():
            tmp = guest.base_image.with_suffix(".tmp")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), f"{BASE_IMAGE_MB}M"], check=True)
            os.replace(tmp, guest.base_image)
        for path in (guest.kernel, guest.initrd, guest.base_image):
            os.chmod(path, 0o644)
    return guest


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _kernel_package() -> str:
    arch = _run(["dpkg", "--print-architecture"]).strip()
    meta = f"linux-image-{arch}"
    for attempt in range(2):
        try:
            out = _run(["apt-cache", "depends", meta])
            found = re.findall(rf"Depends:\s*(linux-image-[0-9][^\s]*-{arch})\b", out)
            if found:
                return str(found[0])
        except RuntimeError:
            if attempt:
                raise
        _run(["apt-get", "update"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    raise RuntimeError(f"cannot find the kernel package {meta} depends on")


def _fetch_kernel(cache: Path) -> None:
    pkg = _kernel_package()
    with tempfile.TemporaryDirectory(prefix="tc-guest-") as tmp_s:
        tmp = Path(tmp_s)
        os.chmod(tmp, 0o777)  # apt-get download drops privileges to _apt where it can
        try:
            _run(["apt-get", "download", pkg], cwd=tmp)
        except RuntimeError:
            _run(["apt-get", "update"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            _run(["apt-get", "download", pkg], cwd=tmp)
        debs = sorted(tmp.glob("*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
        root = tmp / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise RuntimeError(f"{pkg} has no /boot/vmlinuz-*")
        version = kernels[0].name.removeprefix("vmlinuz-")
        mod_root = root / "lib" / "modules" / version
        if not mod_root.is_dir():
            mod_root = root / "usr" / "lib" / "modules" / version
        modules = cache / "modules"
        if modules.exists():
            shutil.rmtree(modules)
        modules.mkdir()
        all_modules = {_module_name(ko.name): ko for ko in mod_root.rglob("*.ko*")}
        for name, _ in _load_order(all_modules):
            shutil.copy2(all_modules[name], modules / all_modules[name].name)
        (modules / "version").write_text(version + "\n")
        tmp_kernel = cache / "vmlinuz.tmp"
        shutil.copy2(kernels[0], tmp_kernel)
        os.replace(tmp_kernel, cache / "vmlinuz")


def _module_name(file_name: str) -> str:
    return file_name.split(".ko", 1)[0].replace("-", "_")


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        import lzma

        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        raise RuntimeError(f"zstd-compressed kernel modules are not supported: {path}")
    return data


def _module_deps(blob: bytes) -> list[str]:
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", blob)
    if not m or not m.group(1):
        return []
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d]


def _load_order(files: dict[str, Path]) -> list[tuple[str, bytes]]:
    """The wanted modules (name -> file) and their dependencies, dependencies first."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = files.get(name)
        if path is None:  # built in (or absent): nothing to load
            return
        blob = _read_module(path)
        for dep in _module_deps(blob):
            visit(dep)
        order.append((name, blob))

    for wanted in WANTED_MODULES:
        visit(wanted)
    return order


class _Cpio:
    """A minimal newc cpio writer (what the kernel's initramfs unpacker reads)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name_b = name.encode() + b"\x00"
        header = "070701" + "".join(
            f"{v:08x}"
            for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)
        )
        self.ino += 1
        self.buf.write(header.encode() + name_b)
        self.buf.write(b"\x00" * (-(110 + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\x00" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.exists() and "not a dynamic executable" in _ldd(path):
            return path
    _run(["apt-get", "install", "-y", "busybox-static"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return Path("/bin/busybox")


def _ldd(path: Path) -> str:
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def _build_initrd(modules_dir: Path, target: Path) -> None:
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "mnt", "run", "tmp", "etc", "etc/acpi", "etc/acpi/PWRF", "lib",
              "lib/modules"):
        cpio.dir(d)
    cpio.file("bin/busybox", _busybox().read_bytes(), 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    cpio.file("etc/acpi/PWRF/00000080", POWER_BUTTON_SCRIPT.encode(), 0o755)
    order = _load_order({_module_name(p.name): p for p in modules_dir.iterdir() if ".ko" in p.name})
    for name, blob in order:
        cpio.file(f"lib/modules/{name}.ko", blob)
    cpio.file("lib/modules/load-order", ("\n".join(name for name, _ in order) + "\n").encode())
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(cpio.finish(), compresslevel=6))
    os.replace(tmp, target)
