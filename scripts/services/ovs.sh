#!/usr/bin/env bash
# Installs Open vSwitch (ovsdb-server, ovs-vswitchd, ovsdb-tool, ovs-vsctl/ovs-appctl) for the ovs network
# backend and its tests. Idempotent: a second run does nothing. Runs as root on Debian 12.
# No system-wide daemon is started: the tests start their own ovsdb-server/ovs-vswitchd per simulated host
# (tests/harness/ovs.py), and production hosts start openvswitch-switch from their init system.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./packages.sh openvswitch-switch openvswitch-common iproute2
