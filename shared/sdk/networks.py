"""Networking resource groups: VPCs, subnets, ports, security groups, elastic IPs and VPC peerings.

Objects are named by id or by name (elastic IPs also by address); names are per tenant, security group
names per VPC (give ``vpc`` when two VPCs have a group of that name).
"""

from __future__ import annotations

from typing import Any

from shared.sdk.base import ListableResource, body, query, seg


class _Named(ListableResource):
    """get/delete by id or name, with ``tenant`` (the cluster admin may act in another tenant)."""

    def get(self, ident: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(ident)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def delete(self, ident: str, *, tenant: str | None = None) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(ident)}", params=query(tenant=tenant))

    def _post(self, path: str, json: dict[str, Any] | None, tenant: str | None,
              idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "POST", path, params=query(tenant=tenant, **params), json=json, idempotency_key=idempotency_key
        )
        return result


class VpcsAPI(_Named):
    """VPCs: isolated overlay networks, each with its own VNI, CIDR and default security group."""

    path = "/v1/vpcs"

    def create(self, name: str, cidr: str, *, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a VPC (``cidr`` like 10.1.0.0/16: IPv4, /8 to /28, no host bits)."""
        return self._post(self.path, {"name": name, "cidr": cidr}, tenant, idempotency_key)


class SubnetsAPI(_Named):
    """Subnets of a VPC; instances get their address from one."""

    path = "/v1/subnets"

    def create(self, name: str, vpc: str, cidr: str, *, nat_outbound: bool = False, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a subnet inside ``vpc``; ``nat_outbound`` lets its instances reach outside addresses."""
        return self._post(self.path, {"name": name, "vpc": vpc, "cidr": cidr, "nat_outbound": nat_outbound},
                          tenant, idempotency_key)

    def update(self, ident: str, *, nat_outbound: bool, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "PATCH", f"{self.path}/{seg(ident)}", params=query(tenant=tenant), json={"nat_outbound": nat_outbound}
        )
        return result


class PortsAPI(ListableResource):
    """Ports (instance NICs): made and removed with their instances; list with ``vpc=``/``subnet=``; their
    security groups can be changed."""

    path = "/v1/ports"

    def get(self, port_id: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(port_id)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def update(self, port_id: str, *, security_groups: list[str], tenant: str | None = None) -> dict[str, Any]:
        """Replace the port's security groups (ids, or names of groups of the port's VPC)."""
        result: dict[str, Any] = self._client.request(
            "PATCH", f"{self.path}/{seg(port_id)}", params=query(tenant=tenant),
            json={"security_groups": list(security_groups)},
        )
        return result


class SecurityGroupsAPI(_Named):
    """Security groups (stateful firewalls on ports) and their rules."""

    path = "/v1/security-groups"

    def create(self, name: str, vpc: str, *, description: str | None = None, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        return self._post(self.path, body(name=name, vpc=vpc, description=description), tenant, idempotency_key)

    def get(self, ident: str, *, stale: bool = False, tenant: str | None = None,
            vpc: str | None = None) -> dict[str, Any]:
        """A group by id or name (``vpc`` tells apart groups of the same name, e.g. each VPC's "default")."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(ident)}", params=query(stale=stale, tenant=tenant, vpc=vpc)
        )
        return result

    def delete(self, ident: str, *, tenant: str | None = None, vpc: str | None = None) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(ident)}", params=query(tenant=tenant, vpc=vpc))

    def add_rule(self, group: str, direction: str, *, protocol: str | None = None, port_min: int | None = None,
                 port_max: int | None = None, remote_cidr: str | None = None, remote_group: str | None = None,
                 vpc: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Add a rule (``direction`` "ingress" or "egress"); returns it with its id."""
        rule = body(direction=direction, protocol=protocol, port_min=port_min, port_max=port_max,
                    remote_cidr=remote_cidr, remote_group=remote_group)
        return self._post(f"{self.path}/{seg(group)}/rules", rule, tenant, vpc=vpc)

    def delete_rule(self, group: str, rule_id: str, *, vpc: str | None = None, tenant: str | None = None) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(group)}/rules/{seg(rule_id)}",
                             params=query(tenant=tenant, vpc=vpc))


class ElasticIpsAPI(_Named):
    """Elastic IPs: public addresses held by the tenant, associated with one instance at a time."""

    path = "/v1/elastic-ips"

    def allocate(self, *, tenant: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._post(self.path, None, tenant, idempotency_key)

    def associate(self, eip: str, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        return self._post(f"{self.path}/{seg(eip)}/associate", {"instance": instance}, tenant)

    def disassociate(self, eip: str, *, tenant: str | None = None) -> dict[str, Any]:
        return self._post(f"{self.path}/{seg(eip)}/disassociate", None, tenant)

    def release(self, eip: str, *, tenant: str | None = None) -> None:
        self.delete(eip, tenant=tenant)


class PeeringsAPI(ListableResource):
    """VPC peerings: two VPCs of a tenant with disjoint CIDRs route to each other."""

    path = "/v1/peerings"

    def create(self, vpc: str, peer_vpc: str, *, tenant: str | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "POST", self.path, params=query(tenant=tenant), json={"vpc": vpc, "peer_vpc": peer_vpc},
            idempotency_key=idempotency_key,
        )
        return result

    def delete(self, peering_id: str, *, tenant: str | None = None) -> None:
        self._client.request("DELETE", f"{self.path}/{seg(peering_id)}", params=query(tenant=tenant))
