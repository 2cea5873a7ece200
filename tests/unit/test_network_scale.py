"""The network document at 10,000 hosts: built from the apply-maintained indexes, so one host's document costs
what it holds, not what the cluster holds (measured here on a state built with the real apply handlers)."""

from __future__ import annotations

import time
from typing import Any

from controller.services.network_views import host_network
from controller.state import instances, netindex, networks
from controller.state.command import CommandContext
from controller.state.data import StateData

HOSTS = 10_000
VPCS = 200
PER_HOST = 2
CTX: CommandContext = {"time": 0.0, "actor_name": "bench"}


def _state() -> StateData:
    data = StateData()
    data.tenants["t"] = {"id": "t", "name": "t", "description": "", "created_at": 0.0}
    data.quotas["t"] = {"instances": -1, "vcpus": -1, "memory_mb": -1}
    for n in range(HOSTS):
        host_id = f"h{n:05d}"
        data.hosts[host_id] = {"id": host_id, "name": host_id, "zone": "z", "state": "up", "enabled": True,
                               "draining": False, "inventory": {"vcpu": {"total": 64}, "memory_mb": {"total": 65536},
                                                                "disk_gb": {"total": 1000}},
                               "used": {}, "instance_count": 0, "desired_rev": 0}
        data.net_hosts[host_id] = {"vtep": f"198.18.{n // 250}.{n % 250 + 1}", "backend": "linuxbridge", "rev": 0}
    for v in range(VPCS):
        vpc = networks.insert_vpc(data, {"id": f"vpc{v}", "tenant_id": "t", "name": f"v{v}",
                                         "cidr": f"10.{v}.0.0/16",
                                         "default_sg": {"id": f"sg{v}", "rule_ids": [f"r{v}a", f"r{v}b"]}}, CTX)
        networks.insert_subnet(data, {"id": f"sn{v}", "tenant_id": "t", "vpc_id": vpc["id"], "name": f"s{v}",
                                      "cidr": f"10.{v}.0.0/20"}, CTX)
    return data


def _create(data: StateData, n: int) -> None:
    data.revision += 1
    args: dict[str, Any] = {
        "id": f"i{n}", "name": f"i{n}", "tenant_id": "t", "host_id": f"h{n % HOSTS:05d}", "kind": "container",
        "image": "alpine", "vcpus": 1, "memory_mb": 64, "disk_gb": 1, "restart_policy": "always",
        "network": {"subnet_id": f"sn{(n // HOSTS + n) % VPCS}", "sg_ids": [], "ip": None, "port_id": f"p{n}",
                    "mac": f"02:00:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"}}
    instances.create(data, args, CTX)
    data.instances[f"i{n}"]["netns"] = f"/proc/{n + 100}/ns/net"  # as the agent's report would set it


def test_one_hosts_document_costs_what_it_holds() -> None:
    data = _state()
    started = time.perf_counter()
    for n in range(HOSTS * PER_HOST):
        _create(data, n)
    per_create = (time.perf_counter() - started) / (HOSTS * PER_HOST)
    assert len(data.ports) == HOSTS * PER_HOST
    sample = [f"h{n:05d}" for n in range(0, HOSTS, HOSTS // 100)]
    started = time.perf_counter()
    docs = [host_network(data, h) for h in sample]
    per_doc = (time.perf_counter() - started) / len(sample)
    started = time.perf_counter()
    for _ in range(10):
        for h in sample:
            netindex.host_revision(data, h)
    per_revision = (time.perf_counter() - started) / (10 * len(sample))
    doc = docs[0]
    assert len(doc.ports) == PER_HOST and len(doc.vpcs) == PER_HOST
    # each host's two ports are in two VPCs; each VPC has 100 ports on 100 hosts: 99 of them remote
    assert all(len(v.remote_ports) == HOSTS * PER_HOST // VPCS - 1 for v in doc.vpcs)
    assert all(len(v.remote_vteps) == HOSTS * PER_HOST // VPCS - 1 for v in doc.vpcs)
    print(f"\n{HOSTS} hosts, {len(data.ports)} ports: create {per_create * 1e6:.0f} us, "
          f"document {per_doc * 1e3:.2f} ms, revision {per_revision * 1e6:.1f} us")
    assert per_create < 0.002 and per_doc < 0.05 and per_revision < 0.0005
