"""Resizing a VM through the API: claimed on its own host in apply like a container's resize (the agent then
applies it cold); a size that does not fit there is refused and changes nothing."""

from __future__ import annotations

import pytest

from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import register_image, up_host
from tests.api.conftest import ApiServer


def test_a_vm_is_resized_on_its_host(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    host = up_host(capi, cadmin, vcpu=4, memory_mb=2048, disk_gb=20)
    image = register_image(cadmin)
    made = dev.instances.create("vm", image["name"], kind="vm", vcpus=1, memory_mb=256, disk_gb=1)
    resized = dev.instances.resize("vm", vcpus=2, memory_mb=1024, disk_gb=4)
    assert (resized["vcpus"], resized["memory_mb"], resized["disk_gb"]) == (2, 1024, 4)
    assert (resized["host"], resized["generation"]) == (host["name"], made["generation"])  # same host, same run
    assert cadmin.hosts.get(host["id"])["allocated"] == {"vcpu": 2, "memory_mb": 1024, "disk_gb": 4}
    with capi.rt.view() as data:
        instance = data.instances[made["id"]]
        assert instance["spec_rev"] == 1 and data.hosts[host["id"]]["desired_rev"] == data.revision
    assert dev.instances.get("vm")["events"][-1]["message"] == "resized to 2 vcpu, 1024 MB, 4 GB"

    with pytest.raises(CloudError) as too_big:
        dev.instances.resize("vm", memory_mb=4096)
    assert (too_big.value.status, too_big.value.code) == (409, "no_valid_host")
    assert "does not fit on host" in too_big.value.message
    with pytest.raises(CloudError) as shrink:
        dev.instances.resize("vm", disk_gb=2)
    assert shrink.value.status == 422 and "only grow" in shrink.value.message
    assert cadmin.hosts.get(host["id"])["allocated"] == {"vcpu": 2, "memory_mb": 1024, "disk_gb": 4}
    assert dev.quota.get()["usage"]["memory_mb"] == 1024
