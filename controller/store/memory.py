"""In-memory store: applies commands immediately. For unit tests and the scale simulator."""

from __future__ import annotations

from typing import Any

from controller.state.command import Command
from controller.state.machine import StateMachine
from controller.store.base import MembershipError, Store, StoreStatus


class MemoryStore(Store):
    def __init__(self, address: str = "memory") -> None:
        self.machine = StateMachine()
        self._address = address
        self._index = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def write(self, command: Command) -> dict[str, Any]:
        self._index += 1
        return self.machine.apply_batch([command])[0]

    async def barrier(self) -> None:
        return None

    def status(self) -> StoreStatus:
        return StoreStatus(role="leader", leader=self._address, term=1, commit_index=self._index,
                           applied_index=self._index, self_address=self._address, members=[self._address])

    async def add_member(self, address: str) -> None:
        raise MembershipError("the in-memory store has no members")

    async def remove_member(self, address: str) -> None:
        raise MembershipError("the in-memory store has no members")
