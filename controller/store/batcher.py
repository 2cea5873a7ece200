"""Groups concurrent commands into one replicated entry (group commit) and serves read barriers.

A read barrier is satisfied by the first batch *submitted after* the read arrived, whether or not
that batch carries writes, so linearizable reads cost no extra log entry under write load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from controller.state.command import Command

Submit = Callable[[list[Command]], Awaitable[list[dict[str, Any]]]]
MAX_BATCH = 256


class Batcher:
    def __init__(self, submit: Submit, max_inflight: int = 2) -> None:
        self._submit = submit
        self._pending: list[tuple[Command | None, asyncio.Future[dict[str, Any] | None]]] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="raft-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for fut in [f for _, f in self._pending]:
            if not fut.done():
                fut.cancel()

    def enqueue(self, command: Command | None) -> asyncio.Future[dict[str, Any] | None]:
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._pending.append((command, fut))
        self._wakeup.set()
        return fut

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()
            self._wakeup.clear()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._wakeup.set()
            batch = [(cmd, fut) for cmd, fut in batch if not fut.done()]
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._flush(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _flush(self, batch: list[tuple[Command | None, asyncio.Future[dict[str, Any] | None]]]) -> None:
        try:
            commands = [cmd for cmd, _ in batch if cmd is not None]
            try:
                results = await self._submit(commands)
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            it = iter(results)
            for cmd, fut in batch:
                value = next(it) if cmd is not None else None
                if not fut.done():
                    fut.set_result(value)
        finally:
            self._slots.release()
