"""The audit log and the live event stream (server-sent events)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from shared.sdk.base import ListableResource, Page, Resource, query


class AuditAPI(ListableResource):
    """Audit records of a tenant (newest last)."""

    path = "/v1/audit"

    def list(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        **filters: Any,
    ) -> Page:
        """One page of audit records matching the filters (``since``/``until`` are RFC 3339 times)."""
        return super().list(
            limit,
            marker,
            stale=stale,
            tenant=tenant,
            all_tenants=all_tenants,
            actor=actor,
            action=action,
            outcome=outcome,
            target=target,
            since=since,
            until=until,
            **filters,
        )


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Decode a ``text/event-stream`` into the JSON objects carried by its ``data`` fields.

    Comments (``:`` lines, used as keep-alives), ``event``/``id``/``retry`` fields and data that is
    not a JSON object are skipped.
    """
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                event = _decode("\n".join(data))
                data = []
                if event is not None:
                    yield event
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        event = _decode("\n".join(data))
        if event is not None:
            yield event


def _decode(data: str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(data)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _lines_until(response: httpx.Response, deadline: float | None) -> Iterator[str]:
    """The response's lines, ending quietly at ``deadline`` (or a read timeout once it is set)."""
    try:
        for line in response.iter_lines():
            yield line
            if deadline is not None and time.monotonic() >= deadline:
                return
    except httpx.ReadTimeout:
        if deadline is None:
            raise


class EventsAPI(Resource):
    """The live stream of audit records, ``GET /v1/events``."""

    def stream(
        self,
        max_events: int | None = None,
        timeout: float | None = None,
        *,
        tenant: str | None = None,
        all_tenants: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Yield events as dicts until ``max_events`` were seen, ``timeout`` seconds passed
        (checked whenever the server sends something, and as a read timeout while it is idle),
        or the server closes the stream. With neither limit it streams forever."""
        if max_events is not None and max_events <= 0:
            return
        deadline = time.monotonic() + timeout if timeout is not None else None
        params = query(tenant=tenant, all_tenants=all_tenants)
        count = 0
        with self._client.stream(
            "GET",
            "/v1/events",
            params=params,
            read_timeout=timeout,
            headers={"Accept": "text/event-stream"},
        ) as response:
            for event in parse_sse(_lines_until(response, deadline)):
                yield event
                count += 1
                if max_events is not None and count >= max_events:
                    return
