"""What a container gets from the rest of the cloud: its VPC port and its volumes.

A container with a VPC port starts with docker's ``none`` network (only loopback); netd then moves one end of a
veth pair into its network namespace, which this module finds (``/proc/<pid>/ns/net``) so the agent can report
it. Its resolver is the subnet gateway, where netd's per-VPC DNS answers. Volumes are directories that storaged
mounted on this host, bind-mounted at their mount paths. Docker cannot add a mount to an existing container, so
a changed set of volumes means a new container (same instance, same generation); the label
``thecloud.volumes`` records the set a container was made with.
"""

from __future__ import annotations

import os
from typing import Any

from agent.drivers.base import DriverError, InstanceSpec

LABEL_VOLUMES = "thecloud.volumes"
LABEL_NIC = "thecloud.nic"


def volumes_label(spec: InstanceSpec) -> str:
    return ",".join(sorted(f"{v.volume_id}:{v.mount_path}" for v in spec.volumes))


def binds(spec: InstanceSpec) -> dict[str, dict[str, str]] | None:
    """docker-py's ``binds``: host directory -> mount path; only filesystem volumes fit a container."""
    out: dict[str, dict[str, str]] = {}
    for volume in spec.volumes:
        if volume.kind != "filesystem":
            raise DriverError(f"volume {volume.volume_id} is a block volume; a container needs a filesystem volume")
        if not volume.path or not os.path.isdir(volume.path):
            raise DriverError(f"volume {volume.volume_id} is not mounted on this host (no {volume.path or 'path'})")
        if not volume.mount_path.startswith("/"):
            raise DriverError(f"volume {volume.volume_id}: mount path must be absolute")
        out[volume.path] = {"bind": volume.mount_path, "mode": "ro" if volume.read_only else "rw"}
    return out or None


def network_options(spec: InstanceSpec, default_network: str | None) -> dict[str, Any]:
    """``create_host_config`` keywords for the container's network."""
    if spec.nic is None:
        return {"network_mode": default_network}
    return {"network_mode": "none", "dns": [spec.nic.gateway] if spec.nic.gateway else None}


def hostname(spec: InstanceSpec) -> str | None:
    """With a VPC port, the instance name is the container's hostname (as its VPC's DNS knows it), when valid."""
    label = spec.name.lower()[:63]
    if spec.nic is None or not label or label[0] == "-" or not all(ch.isalnum() or ch == "-" for ch in label):
        return None
    return label


def labels(spec: InstanceSpec) -> dict[str, str]:
    out = {LABEL_VOLUMES: volumes_label(spec)} if spec.volumes else {}
    if spec.nic is not None:
        out[LABEL_NIC] = spec.nic.port_id
    return out


def netns_path(inspected: dict[str, Any]) -> str | None:
    """The network namespace of a running container, from ``docker inspect``."""
    pid = int((inspected.get("State") or {}).get("Pid") or 0)
    return f"/proc/{pid}/ns/net" if pid > 0 else None
