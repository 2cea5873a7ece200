"""Test helpers for libvirt domains: find and remove the domains of test hosts. (``reachable_dir`` gives a data
directory QEMU can reach: pytest's own tmp dirs are 0700, and QEMU runs as libvirt-qemu.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import libvirt

from agent.drivers.libvirt_xml import METADATA_NS, parse_metadata
from tests.harness.dirs import reachable_dir

URI = "qemu:///system"
__all__ = ["URI", "domain_xml", "host_domain_names", "reachable_dir", "remove_host_domains"]


def host_domain_names(host_ids: Iterable[str]) -> list[str]:
    """Names of the domains whose thecloud metadata names one of ``host_ids``."""
    wanted = set(host_ids)
    conn = libvirt.open(URI)
    try:
        names = []
        for dom in conn.listAllDomains(0):
            try:
                meta = parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0))
            except libvirt.libvirtError:
                continue  # not one of ours
            if meta is not None and meta.host_id in wanted:
                names.append(dom.name())
        return names
    finally:
        conn.close()


def remove_host_domains(host_ids: Iterable[str]) -> None:
    """Destroys and undefines every domain of these test hosts (teardown; errors are ignored)."""
    names = host_domain_names(host_ids)
    conn = libvirt.open(URI)
    try:
        for name in names:
            with contextlib.suppress(libvirt.libvirtError):
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


def domain_xml(name: str) -> str:
    conn = libvirt.open(URI)
    try:
        return str(conn.lookupByName(name).XMLDesc(0))
    finally:
        conn.close()
