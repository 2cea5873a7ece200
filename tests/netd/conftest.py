"""Registers the ovs backend's per-host setup (own ovsdb-server/ovs-vswitchd) with tests.harness.netsim."""

import tests.harness.ovs  # noqa: F401
