"""The secrets resource group."""

from __future__ import annotations

from typing import Any

from shared.sdk.base import ListableResource, query, seg


class SecretsAPI(ListableResource):
    """Versioned secrets of a tenant; listing and ``get`` return metadata only."""

    path = "/v1/secrets"

    def create(
        self, name: str, value: str, *, tenant: str | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create a secret (version 1)."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            params=query(tenant=tenant),
            json={"name": name, "value": value},
            idempotency_key=idempotency_key,
        )
        return result

    def get(self, name: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """A secret's metadata."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(name)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def get_value(self, name: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """``{"name", "version", "value"}`` of a secret."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(name)}/value", params=query(stale=stale, tenant=tenant)
        )
        return result

    def rotate(self, name: str, value: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Replace a secret's value; its version goes up by one."""
        result: dict[str, Any] = self._client.request(
            "PUT", f"{self.path}/{seg(name)}", params=query(tenant=tenant), json={"value": value}
        )
        return result

    def delete(self, name: str, *, tenant: str | None = None) -> None:
        """Delete a secret."""
        self._client.request("DELETE", f"{self.path}/{seg(name)}", params=query(tenant=tenant))
