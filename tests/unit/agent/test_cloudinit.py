"""NoCloud seed images: built with pycdlib, read back with pycdlib."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest
import yaml

from agent.drivers.cloudinit import (
    LABEL,
    build_seed_iso,
    hostname_for,
    make_seed,
    meta_data,
    network_config,
    write_seed_iso,
)

USER_DATA = "#cloud-config\nruncmd:\n  - echo héllo > /tmp/x\n"


def read_iso(data: bytes) -> tuple[str, dict[str, bytes], dict[str, bytes]]:
    """(volume label, files by Rock Ridge name, files by Joliet name)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        rr: dict[str, bytes] = {}
        joliet: dict[str, bytes] = {}
        for name in ("meta-data", "user-data", "network-config"):
            for store, kw in ((rr, "rr_path"), (joliet, "joliet_path")):
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, **{kw: f"/{name}"})
                store[name] = out.getvalue()
        return label, rr, joliet
    finally:
        iso.close()


def test_seed_iso_label_and_files() -> None:
    seed = make_seed("i-42", "Web Server #1", USER_DATA)
    label, rr, joliet = read_iso(build_seed_iso(seed))
    assert label == LABEL == "cidata"
    assert rr == joliet
    assert rr["user-data"] == USER_DATA.encode()
    meta = yaml.safe_load(rr["meta-data"])
    assert meta == {"instance-id": "i-42", "local-hostname": "web-server-1"}
    net = yaml.safe_load(rr["network-config"])
    assert net["version"] == 2
    (nic,) = net["ethernets"].values()
    assert nic["dhcp4"] is True


def test_empty_user_data() -> None:
    _, rr, _ = read_iso(build_seed_iso(make_seed("i-1", "x", "")))
    assert rr["user-data"] == b""


def test_write_seed_iso(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    write_seed_iso(make_seed("i-7", "seven", "hello"), str(path))
    label, rr, _ = read_iso(path.read_bytes())
    assert label == "cidata" and rr["user-data"] == b"hello"
    assert not (tmp_path / "seed.iso.tmp").exists()


def test_network_config_matches_first_nic() -> None:
    by_name = yaml.safe_load(network_config())
    assert by_name["ethernets"]["nic0"]["match"] == {"name": "e*"}
    by_mac = yaml.safe_load(network_config("52:54:00:AB:CD:EF"))
    nic = by_mac["ethernets"]["nic0"]
    assert nic["match"] == {"macaddress": "52:54:00:ab:cd:ef"}
    assert nic["dhcp4"] is True and nic["set-name"] == "eth0"


@pytest.mark.parametrize(("name", "expected"), [
    ("web", "web"),
    ("Web Server #1", "web-server-1"),
    ("--x--", "x"),
    ("ünïcode", "n-code"),
    ("", "i-1"),
    ("!!!", "i-1"),
    ("a" * 100, "a" * 63),
])
def test_hostname(name: str, expected: str) -> None:
    assert hostname_for(name, "i-1") == expected


def test_meta_data_yaml_quotes_odd_values() -> None:
    assert yaml.safe_load(meta_data("123", "yes")) == {"instance-id": "123", "local-hostname": "yes"}
