"""Hosts for API tests without agents: join with a token, then heartbeat and report on the server's loop."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from controller.services import agent_link
from shared import pki
from shared.sdk import CloudClient
from tests.api.conftest import ApiServer, unique

AGENT_ADDRESS = "127.0.0.1:1"  # nobody listens there


def new_csr() -> str:
    return pki.csr_pem(pki.new_key(), "x")


def join_host(admin: CloudClient, name: str | None = None, zone: str | None = None) -> dict[str, Any]:
    """A registered host (state "new"): a fresh join token spent on a fresh CSR."""
    token = admin.hosts.create_token(zone=zone)["token"]
    return admin.hosts.join(token, name or unique("host"), new_csr(), zone=zone)


def payload(vcpu: int = 8, memory_mb: int = 16384, disk_gb: int = 100, *,
            running: Iterable[tuple[str, int]] = (), kinds: Sequence[str] = ("container", "vm"),
            traits: Sequence[str] = ()) -> dict[str, Any]:
    return {"driver": "fake", "kinds": list(kinds), "traits": list(traits),
            "inventory": {"vcpu": {"total": vcpu}, "memory_mb": {"total": memory_mb}, "disk_gb": {"total": disk_gb}},
            "agent_address": AGENT_ADDRESS, "agent_version": "test",
            "instances": [[instance_id, generation] for instance_id, generation in running]}


def heartbeat(api: ApiServer, host_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One heartbeat, as the agent API would deliver it; returns the controller's answer."""
    return api.run(agent_link.heartbeat(api.rt, host_id, body if body is not None else payload()))


def up_host(api: ApiServer, admin: CloudClient, zone: str | None = None, name: str | None = None,
            **capacity: int) -> dict[str, Any]:
    """A joined host that heartbeated once, so it is up; returns the host as the API shows it."""
    joined = join_host(admin, name, zone)
    answer = heartbeat(api, joined["host_id"], payload(**capacity))
    assert answer["state"] == "up", answer
    return admin.hosts.get(joined["host_id"])


def report(api: ApiServer, host_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """An agent's status report (``[{"id", "generation", "status"}]``)."""
    return api.run(agent_link.report(api.rt, host_id, items))


def report_status(api: ApiServer, host_id: str, instance: dict[str, Any], status: str) -> dict[str, Any]:
    return report(api, host_id, [{"id": instance["id"], "generation": instance["generation"], "status": status}])


def register_image(admin: CloudClient, name: str | None = None, content: bytes | None = None,
                   fmt: str = "raw") -> dict[str, Any]:
    """A VM image from a small uploaded blob (the cluster admin's)."""
    data = content if content is not None else b"test image " + uuid.uuid4().bytes
    sha = hashlib.sha256(data).hexdigest()
    admin.request("PUT", f"/v1/images/blobs/{sha}", content=data, headers={"Content-Type": "application/octet-stream"})
    result: dict[str, Any] = admin.images.register(name or unique("img"), sha, format=fmt)
    return result
