#!/usr/bin/env bash
# Installs (if missing) and starts (if not answering) libvirtd + virtlogd for the libvirt compute driver.
# Idempotent: on a prepared machine with a running libvirtd it does nothing. Needs root.
# Hosts without systemd as PID 1 (containers, CI) get the daemons started by hand.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(libvirt-daemon-system qemu-system-x86 qemu-utils libvirt-dev pkg-config)
URI="qemu:///system"

if [ "$(id -u)" != 0 ]; then
  echo "libvirt.sh: must run as root" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "libvirt.sh: installing ${missing[*]}"
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

answers() { timeout 10 virsh -c "$URI" list >/dev/null 2>&1; }

if answers; then
  exit 0
fi

echo "libvirt.sh: starting virtlogd and libvirtd"
if [ -d /run/systemd/system ]; then
  # systemd is PID 1 (a real host): let it run the daemons.
  systemctl start virtlogd.socket libvirtd.socket libvirtd.service || true
else
  # No systemd (containers, CI): start the daemons by hand.
  if ! pgrep -x virtlogd >/dev/null 2>&1; then
    virtlogd -d
  fi
  if ! pgrep -x libvirtd >/dev/null 2>&1; then
    libvirtd -d
  fi
fi

for _ in $(seq 1 60); do
  if answers; then
    echo "libvirt.sh: libvirtd answers on $URI"
    exit 0
  fi
  sleep 1
done
echo "libvirt.sh: libvirtd did not answer on $URI within 60 s" >&2
exit 1
