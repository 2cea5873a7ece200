"""NoCloud seeds for cloud-init: ``meta-data``, ``user-data`` and ``network-config`` in an ISO9660 image.

The image carries the volume label ``cidata`` (what cloud-init's NoCloud datasource looks for), Rock Ridge and
Joliet names (so the files are called ``user-data`` and not ``USERDATA.;1``), and is built with pycdlib:
no genisoimage/xorriso needed on the host. Everything here is pure apart from :func:`write_seed_iso`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import pycdlib
import yaml

LABEL = "cidata"

# ISO9660 level-1 name, Rock Ridge / Joliet name
_FILES = (
    ("/METADATA.;1", "meta-data"),
    ("/USERDATA.;1", "user-data"),
    ("/NETWORKC.;1", "network-config"),
)


@dataclass(frozen=True)
class Seed:
    meta_data: str
    user_data: str
    network_config: str

    def files(self) -> dict[str, bytes]:
        return {
            "meta-data": self.meta_data.encode(),
            "user-data": self.user_data.encode(),
            "network-config": self.network_config.encode(),
        }


def hostname_for(name: str, fallback: str) -> str:
    """A valid hostname label (RFC 1123) made from an instance name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not label:
        label = re.sub(r"[^a-z0-9-]+", "-", fallback.lower()).strip("-")[:63].strip("-") or "instance"
    return label


def meta_data(instance_id: str, hostname: str) -> str:
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname}, sort_keys=False)


def network_config(mac: str | None = None) -> str:
    """Network config version 2: DHCP (v4 and v6) on the first NIC.

    With the NIC's MAC address the rule matches exactly that NIC; without one it matches the usual names of a
    first ethernet NIC (``en*``/``eth*``), which is what a VM with a single virtio NIC has.
    """
    match: dict[str, str] = {"macaddress": mac.lower()} if mac else {"name": "e*"}
    nic: dict[str, object] = {"match": match, "dhcp4": True, "dhcp6": True}
    if mac:
        nic["set-name"] = "eth0"
    return yaml.safe_dump({"version": 2, "ethernets": {"nic0": nic}}, sort_keys=False)


def make_seed(instance_id: str, name: str, user_data: str, mac: str | None = None) -> Seed:
    return Seed(
        meta_data=meta_data(instance_id, hostname_for(name, instance_id)),
        user_data=user_data,
        network_config=network_config(mac),
    )


def build_seed_iso(seed: Seed) -> bytes:
    """The seed as an ISO9660 image (bytes) labelled ``cidata``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    try:
        contents = seed.files()
        for iso_path, name in _FILES:
            data = contents[name]
            iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def write_seed_iso(seed: Seed, path: str) -> None:
    """Writes the seed image to ``path`` (atomically: a temporary file, then rename)."""
    data = build_seed_iso(seed)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
