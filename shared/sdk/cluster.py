"""The cluster resource group: health, Raft membership and backups."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.sdk.base import Resource, query, seg

if TYPE_CHECKING:
    from shared.sdk.client import CloudClient


class MembersAPI(Resource):
    """Controllers in the Raft cluster (cluster admin)."""

    path = "/v1/cluster/members"

    def list(self, *, stale: bool = False) -> dict[str, Any]:
        """``{"items": [{"raft_address", "api_address", "status"}]}``."""
        result: dict[str, Any] = self._client.request("GET", self.path, params=query(stale=stale))
        return result

    def add(
        self, raft_address: str, api_address: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Add a controller to the cluster."""
        payload: dict[str, Any] = {"raft_address": raft_address}
        if api_address is not None:
            payload["api_address"] = api_address
        result: dict[str, Any] = self._client.request(
            "POST", self.path, json=payload, idempotency_key=idempotency_key
        )
        return result

    def remove(self, raft_address: str) -> None:
        """Remove a controller from the cluster."""
        self._client.request("DELETE", f"{self.path}/{seg(raft_address)}")


class LeaderAPI(Resource):
    """The Raft leader (cluster admin)."""

    def transfer(self, to: str | None = None) -> dict[str, Any]:
        """Hand leadership to member ``to`` (raft or API address; None: the most up-to-date follower).

        Returns once the new leader is elected: ``{"leader", "leader_raft", "previous_leader_raft", "term",
        "seconds"}``. A 409 means leadership stayed where it was (no eligible follower, or the transfer timed out).
        """
        payload: dict[str, Any] = {} if to is None else {"to": to}
        result: dict[str, Any] = self._client.request("POST", "/v1/cluster/leader/transfer", json=payload)
        return result


class ClusterAPI(Resource):
    """Cluster-wide operations."""

    def __init__(self, client: CloudClient) -> None:
        super().__init__(client)
        self.members = MembersAPI(client)
        self.leader = LeaderAPI(client)

    def health(self) -> dict[str, Any]:
        """The answering controller's view of the cluster (no auth needed)."""
        result: dict[str, Any] = self._client.request("GET", "/v1/health", auth=False)
        return result

    def backup(self, path: str | os.PathLike[str], *, timeout: float | None = 300.0) -> int:
        """Stream a consistent snapshot into ``path`` (written atomically); returns its size in bytes.

        ``timeout`` bounds each wait for data from the server (None = wait forever).
        """
        target = Path(path)
        directory = target.parent if str(target.parent) else Path(".")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
        size = 0
        try:
            with (
                os.fdopen(fd, "wb") as out,
                self._client.stream(
                    "GET",
                    "/v1/cluster/backup",
                    read_timeout=timeout,
                    headers={"Accept": "application/octet-stream"},
                ) as response,
            ):
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return size
