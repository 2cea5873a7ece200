"""Helpers shared by the SDK's resource groups: query building, path quoting, pagination."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from shared.sdk.client import CloudClient

Page = dict[str, Any]


def seg(value: str) -> str:
    """Quote one path segment (an id, a name or a raft address)."""
    return quote(str(value), safe=":@")


def query(
    *, stale: bool = False, tenant: str | None = None, all_tenants: bool = False, **extra: Any
) -> dict[str, str]:
    """Build query parameters, dropping unset values and spelling booleans as ``true``/``false``."""
    params: dict[str, str] = {}
    if stale:
        params["stale"] = "true"
    if tenant is not None:
        params["tenant"] = tenant
    if all_tenants:
        params["all_tenants"] = "true"
    for key, value in extra.items():
        if value is None:
            continue
        params[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return params


def body(**fields: Any) -> dict[str, Any]:
    """A JSON body with the unset (None) fields left out."""
    return {key: value for key, value in fields.items() if value is not None}


class Resource:
    """Base of a resource group: holds the client it sends requests through."""

    def __init__(self, client: CloudClient) -> None:
        self._client = client


class ListableResource(Resource):
    """A resource with a paginated list endpoint at ``path``."""

    path = ""

    def list(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        **filters: Any,
    ) -> Page:
        """One page: ``{"items": [...], "next_marker": str | None}``."""
        params = query(
            stale=stale, tenant=tenant, all_tenants=all_tenants, limit=limit, marker=marker, **filters
        )
        page: Page = self._client.request("GET", self.path, params=params)
        return page

    def iter_all(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Yield every item, fetching pages of ``limit`` and following ``next_marker``."""
        while True:
            page = self.list(limit, marker, stale=stale, tenant=tenant, all_tenants=all_tenants, **filters)
            yield from page.get("items") or []
            next_marker = page.get("next_marker")
            if not next_marker or next_marker == marker:
                return
            marker = next_marker

    def list_all(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        **filters: Any,
    ) -> builtins.list[dict[str, Any]]:
        """Every item of every page, as a list."""
        return list(
            self.iter_all(limit, marker, stale=stale, tenant=tenant, all_tenants=all_tenants, **filters)
        )
