#!/usr/bin/env bash
# Everything the test suite needs on this machine, installed if missing and started if not running:
# host networking tools, dockerd (+ the offline test image) and libvirtd. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./packages.sh iproute2 nftables iputils-ping qemu-utils dnsmasq-base systemd
./docker.sh
./libvirt.sh
./storage.sh
./ovs.sh
./simhosts.sh
