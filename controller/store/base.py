"""The Store interface: how the controller proposes commands and reads consistent state."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from controller.state.command import Command
from controller.state.machine import StateMachine


class StoreUnavailable(Exception):
    """The write or read cannot be served now (no leader, not committed in time). Maps to 503."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class MembershipError(Exception):
    """A membership change was refused (e.g. another change is still in progress)."""


class TransferError(Exception):
    """A leadership transfer did not happen. ``kind``: "conflict" (409), "not_found" (404), "unavailable" (503)."""

    def __init__(self, message: str, kind: str = "conflict") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class TransferResult:
    leader: str  # the new leader's raft address
    term: int
    previous_leader: str | None
    seconds: float


@dataclass
class StoreStatus:
    role: str  # "leader" | "follower" | "candidate"
    leader: str | None  # leader's raft address
    term: int
    commit_index: int
    applied_index: int
    self_address: str
    members: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)


class Store(abc.ABC):
    """Replicated command log plus the state machine it drives."""

    machine: StateMachine

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def write(self, command: Command) -> dict[str, Any]:
        """Returns the apply outcome once the command is committed on a majority and applied here."""

    @abc.abstractmethod
    async def barrier(self) -> None:
        """Returns once this replica has applied every write committed before the call (linearizable read)."""

    @abc.abstractmethod
    def status(self) -> StoreStatus: ...

    @abc.abstractmethod
    async def add_member(self, address: str) -> None: ...

    @abc.abstractmethod
    async def remove_member(self, address: str) -> None: ...

    def is_leader(self) -> bool:
        return self.status().role == "leader"

    async def transfer_leadership(self, to: str | None = None) -> TransferResult:
        """Hands leadership to member ``to`` (a raft address; None: the best follower) and waits for it."""
        raise TransferError("no eligible follower to hand leadership to: this store has no other member")
