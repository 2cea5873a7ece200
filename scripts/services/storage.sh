#!/usr/bin/env bash
# Tools the storaged volume backends use (btrfs, file, lvm) and their tests need: installed if missing.
# Idempotent: on a prepared machine it does nothing. LVM thin volumes also need device-mapper in the kernel,
# which this script cannot provide (tests skip LVM where /dev/mapper/control is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./packages.sh btrfs-progs e2fsprogs lvm2 thin-provisioning-tools qemu-utils util-linux xfsprogs
