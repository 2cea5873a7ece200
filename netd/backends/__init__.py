"""Network backends, one per file, chosen by netd's ``--backend`` setting."""

from __future__ import annotations

import importlib

from netd.backends.base import NetworkBackend

BACKENDS = ("linuxbridge", "ovs")


def load_backend(name: str, ovs_datapath: str = "system", ovsdb: str | None = None,
                 netns_dir: str = "/run/netns") -> NetworkBackend:
    """The backend called ``name``; the OVS one is imported only when asked for (it needs ovsdb).
    ``ovsdb``: the ovsdb-server endpoint (None: OVS's default socket)."""
    if name == "linuxbridge":
        from netd.backends.linuxbridge import LinuxBridgeBackend

        return LinuxBridgeBackend()
    if name == "ovs":
        module = importlib.import_module("netd.backends.ovs")
        options = {"ovsdb": ovsdb} if ovsdb else {}
        backend: NetworkBackend = module.OvsBackend(datapath=ovs_datapath, netns_dir=netns_dir, **options)
        return backend
    if name == "fake":
        from netd.backends.fake import FakeBackend

        return FakeBackend()
    raise ValueError(f"unknown network backend {name!r}; choose one of {', '.join(BACKENDS)}")
