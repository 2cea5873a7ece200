"""Identity resource groups: auth, tenants, quotas, users, roles and API keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.sdk.base import ListableResource, Resource, body, query, seg


class AuthAPI(Resource):
    """Login and identity of the caller."""

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in with a password; the client then authenticates with the returned JWT.

        Returns ``{"token", "token_type", "expires_at"}``. Any API key set on the client is dropped so
        that later calls act as the user who just logged in.
        """
        result: dict[str, Any] = self._client.request(
            "POST", "/v1/auth/login", json={"username": username, "password": password}, auth=False
        )
        self._client.token = result["token"]
        self._client.api_key = None
        return result

    def whoami(self, *, stale: bool = False) -> dict[str, Any]:
        """``{"user", "tenant", "role"}`` of the caller."""
        result: dict[str, Any] = self._client.request("GET", "/v1/auth/whoami", params=query(stale=stale))
        return result


class TenantsAPI(ListableResource):
    """Tenants and their quotas (cluster admin)."""

    path = "/v1/tenants"

    def create(
        self, name: str, description: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create a tenant."""
        result: dict[str, Any] = self._client.request(
            "POST", self.path, json=body(name=name, description=description), idempotency_key=idempotency_key
        )
        return result

    def get(self, tenant: str, *, stale: bool = False) -> dict[str, Any]:
        """A tenant by id or name."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(tenant)}", params=query(stale=stale)
        )
        return result

    def delete(self, tenant: str) -> None:
        """Delete an empty tenant (409 if it still has users or secrets)."""
        self._client.request("DELETE", f"{self.path}/{seg(tenant)}")

    def get_quota(self, tenant: str, *, stale: bool = False) -> dict[str, Any]:
        """``{"tenant_id", "limits", "usage"}`` of a tenant."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(tenant)}/quota", params=query(stale=stale)
        )
        return result

    def set_quota(self, tenant: str, limits: Mapping[str, int]) -> dict[str, Any]:
        """Set some quota limits of a tenant (-1 = unlimited); returns the new quota."""
        result: dict[str, Any] = self._client.request(
            "PUT", f"{self.path}/{seg(tenant)}/quota", json={"limits": dict(limits)}
        )
        return result


class QuotaAPI(Resource):
    """The caller's own quota."""

    def get(self, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """``{"tenant_id", "limits", "usage"}`` of the caller's tenant (or ``tenant``)."""
        result: dict[str, Any] = self._client.request(
            "GET", "/v1/quota", params=query(stale=stale, tenant=tenant)
        )
        return result


class UsersAPI(ListableResource):
    """Users of a tenant."""

    path = "/v1/users"

    def create(
        self,
        name: str,
        role: str,
        password: str | None = None,
        tenant: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Create a user with a role; ``tenant`` (cluster admin) creates it in another tenant."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            json=body(name=name, password=password, role=role, tenant=tenant),
            idempotency_key=idempotency_key,
        )
        return result

    def get(self, user: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """A user by id or name."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(user)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def update(
        self,
        user: str,
        *,
        password: str | None = None,
        role: str | None = None,
        disabled: bool | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Change a user's password, role or disabled flag (only the given fields)."""
        result: dict[str, Any] = self._client.request(
            "PATCH",
            f"{self.path}/{seg(user)}",
            params=query(tenant=tenant),
            json=body(password=password, role=role, disabled=disabled),
        )
        return result

    def delete(self, user: str, *, tenant: str | None = None) -> None:
        """Delete a user."""
        self._client.request("DELETE", f"{self.path}/{seg(user)}", params=query(tenant=tenant))


class RolesAPI(Resource):
    """The roles a user can have."""

    def list(self, *, stale: bool = False) -> dict[str, Any]:
        """``{"items": [{"name", "description"}]}``."""
        result: dict[str, Any] = self._client.request("GET", "/v1/roles", params=query(stale=stale))
        return result


class KeysAPI(ListableResource):
    """API keys."""

    path = "/v1/keys"

    def create(
        self,
        name: str,
        user: str | None = None,
        expires_in_seconds: int | None = None,
        *,
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Create an API key (for ``user``, default the caller); the result's ``secret`` is shown once."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            params=query(tenant=tenant),
            json=body(name=name, user=user, expires_in_seconds=expires_in_seconds),
            idempotency_key=idempotency_key,
        )
        return result

    def get(self, key_id: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """An API key's metadata."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(key_id)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def revoke(self, key_id: str, *, tenant: str | None = None) -> None:
        """Revoke an API key, effective immediately on every controller."""
        self._client.request("DELETE", f"{self.path}/{seg(key_id)}", params=query(tenant=tenant))
