"""Simulated hosts as network namespaces on an underlay bridge, with nftables to cut and heal a host.

Names start with ``tct`` so cleanup only ever touches what the tests made. Addresses are in 198.18.0.0/15.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Underlay:
    """A bridge in the root namespace (the controllers' side) plus one namespace per simulated host."""

    subnet: int  # third octet: 198.18.<subnet>.0/24
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"tctb{self.tag}"

    @property
    def gateway(self) -> str:
        return f"198.18.{self.subnet}.1"

    def address(self, index: int) -> str:
        return f"198.18.{self.subnet}.{10 + index}"

    def create(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_host(self) -> tuple[str, str]:
        index = len(self.hosts)
        ns = f"tctn{self.tag}{index}"
        outside, inside = f"tctv{self.tag}{index}", f"tctp{self.tag}{index}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", outside, "master", self.bridge, "up")
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", inside)
        sh("ip", "-n", ns, "link", "set", inside, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.hosts.append(ns)
        return ns, self.address(index)

    def cut(self, ns: str) -> None:
        """Drops every packet in and out of the namespace, like a pulled cable (loopback keeps working)."""
        rules = ("table inet tctcut {\n"
                 " chain in { type filter hook input priority 0; policy drop; iif \"lo\" accept\n }\n"
                 " chain out { type filter hook output priority 0; policy drop; oif \"lo\" accept\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True,
                       capture_output=True, timeout=30)

    def heal(self, ns: str) -> None:
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "tctcut")

    def destroy(self) -> None:
        for ns in self.hosts:
            sh("ip", "netns", "delete", ns, check=False)
        sh("ip", "link", "delete", self.bridge, check=False)
