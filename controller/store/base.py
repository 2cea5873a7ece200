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
