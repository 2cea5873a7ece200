#!/usr/bin/env bash
# What the simulated bare-metal hosts of tests/harness/simhosts.py need on this machine: mmdebstrap (builds
# the Debian 12 rootfs image once; cached in /var/cache/thecloud-tests), an SSH client (Ansible connects over
# real SSH) and dockerd (docker.sh). Idempotent; the image itself is built by the tests on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./packages.sh mmdebstrap openssh-client
./docker.sh
