#!/usr/bin/env bash
# Installs and starts dockerd (if needed) and builds the offline test image local/busybox:latest.
# Idempotent: a second run does nothing. Runs as root on Debian 12; used by `make test`, CI and
# tests/harness/docker.py. No registry is reachable, so the image is built from busybox-static.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

IMAGE="local/busybox:latest"

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

missing=()
for pkg in docker.io busybox-static; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then missing+=("$pkg"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "docker.sh: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi

if ! docker version >/dev/null 2>&1; then
    echo "docker.sh: starting dockerd (log: /var/log/dockerd.log)"
    # No systemd here (the init script fails on ulimit): start it by hand. --iptables=false keeps
    # dockerd's FORWARD DROP policy away from the project's own bridges; --bip keeps its bridge in
    # the benchmark range 198.18.0.0/15. setsid: a Ctrl-C of the caller (make, pytest) must not reach it.
    "${sudo_cmd[@]}" bash -c 'setsid nohup dockerd --iptables=false --bip 198.19.0.1/24 \
        </dev/null >/var/log/dockerd.log 2>&1 &'
    for _ in $(seq 1 120); do
        if docker version >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
    if ! docker version >/dev/null 2>&1; then
        echo "docker.sh: dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:" >&2
        tail -n 20 /var/log/dockerd.log >&2 || true
        exit 1
    fi
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "docker.sh: building $IMAGE from busybox-static"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/var/www"
    chmod 1777 "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    # Symlinks for every applet (bin/sh, bin/httpd, bin/nc, ...), made by busybox itself.
    "$rootfs/bin/busybox" --install -s "$rootfs/bin"
    # `--install -s DIR` links to the absolute path of the busybox it ran from (the temporary rootfs):
    # point the links at the binary next to them, so they resolve inside the image.
    for link in "$rootfs"/bin/*; do
        if [ -L "$link" ]; then ln -sfn busybox "$link"; fi
    done
    echo "root:x:0:0:root:/:/bin/sh" >"$rootfs/etc/passwd"
    echo "root:x:0:" >"$rootfs/etc/group"
    tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
    echo "docker.sh: built $IMAGE"
fi
