"""What every service needs: the store, the clock and the keys derived from the cluster secret."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from controller.security.ca import load_ca
from controller.security.cluster_secret import derive
from controller.security.secretbox import SecretBox
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.liveness import Liveness, RevisionWatch
from controller.services.placement import HostViews
from controller.state import credentials
from controller.state.command import make_command
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.store.base import Store, StoreUnavailable
from shared.blobs import BlobDir

log = logging.getLogger(__name__)


@dataclass
class ComputeSettings:
    host_grace: float = 15.0
    heartbeat_interval: float = 5.0


DEFAULT_PUBLIC_POOL = "198.18.200.0/24"


@dataclass
class NetworkSettings:
    public_pool: str = DEFAULT_PUBLIC_POOL  # elastic IPs come from here


class AgentClient(Protocol):
    """Reaches an agent's own listener (logs, stats, exec, console); set by the daemon."""

    async def call(self, address: str, host_id: str, method: str, path: str, body: dict[str, Any] | None = None,
                   seconds: float = 30.0) -> dict[str, Any]: ...

    def stream(self, address: str, host_id: str, path: str) -> AsyncIterator[bytes]: ...

    async def websocket(self, address: str, host_id: str, path: str) -> Any:
        """An open aiohttp client WebSocket to an interactive session on the agent."""


class BlobPeers(Protocol):
    """Reaches another controller's agent listener (mutual TLS) to copy an image blob; set by the daemon."""

    def fetch(self, address: str, sha256: str) -> AsyncIterator[bytes]: ...


@dataclass
class Outcome:
    result: Any
    replayed: bool


class Runtime:
    def __init__(self, store: Store, cluster_secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.secretbox = SecretBox(derive(cluster_secret, "secrets-master"))
        self.jwt_key = derive(cluster_secret, "jwt-hs256")
        self.ca = load_ca(cluster_secret)
        self.liveness = Liveness()
        self.revisions = RevisionWatch()
        self.host_views = HostViews()  # the scheduler's view of each host, rebuilt when its record changes
        self.compute = ComputeSettings()
        self.network = NetworkSettings()
        self.agent_client: AgentClient | None = None
        self.images: BlobDir | None = None  # this controller's image blob store (None: no data dir)
        self.blob_peers: BlobPeers | None = None

    async def propose(self, rc: RequestContext, op: str, args: dict[str, Any], *, action: str, target: str,
                      tenant_id: str | None) -> Outcome:
        """Commits one command; raises ServiceError with the state machine's refusal, if any."""
        command = make_command(op, args, rc.command_ctx(self.clock(), action, target, tenant_id))
        outcome = await self.store.write(command)
        if not outcome["ok"]:
            err = outcome["error"]
            raise ServiceError(int(err["status"]), str(err["code"]), str(err["message"]), audited=True)
        return Outcome(result=outcome.get("result"), replayed=bool(outcome.get("replayed")))

    async def record_refusal(self, rc: RequestContext, action: str, target: str, status: int) -> None:
        """Audits a request that changes nothing by itself: a refusal before it became a command, or a login."""
        try:
            await self.propose(rc, "audit.record", {"status": status}, action=action, target=target,
                               tenant_id=rc.caller.tenant_id or None)
        except (ServiceError, StoreUnavailable) as exc:
            log.warning("could not audit refused %s on %s: %s", action, target, exc)

    async def consistent(self, rc: RequestContext) -> None:
        """Waits until this replica reflects every write committed before now (unless ?stale=true).

        The caller's credential is checked again afterwards, so a key revoked through another controller
        is refused here too, even if this replica had not applied the revocation when the request arrived.
        """
        if rc.stale:
            return
        await self.store.barrier()
        if rc.caller.credential.get("kind") in ("key", "jwt"):
            with self.view() as data:
                try:
                    credentials.verify(data, {"time": self.clock(), "credential": rc.caller.credential,
                                              "role": rc.caller.role})
                except ApplyError as err:
                    raise ServiceError(err.status, err.code, err.message) from None

    @contextmanager
    def view(self) -> Iterator[StateData]:
        """The local state under the apply lock; keep the block short and copy what you return."""
        machine = self.store.machine
        with machine.lock:
            yield machine.data
