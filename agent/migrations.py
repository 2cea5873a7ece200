"""Live migration, the agent's two halves (the controller orchestrates: controller/services/migrations.py).

- Target: an instance in the desired state's ``incoming`` (phase ``preparing``) gets its image fetched and the
  driver's ``prepare_in``; the agent reports ``prepared`` with what the driver returned. The reconciler leaves
  the arriving domain alone (agent/reconciler.py) until the controller makes the instance this host's.
- Source: an instance whose desired item carries ``migration`` (the target is ready) is migrated by the
  driver's ``migrate_out`` in a background task; the agent reports ``done`` or ``failed``. While an item
  carries ``migration``, the reconciler neither creates nor changes it: a VM that already left is never
  started here again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.drivers.base import Driver, DriverError
from agent.reconciler import Desired, Pass, Reconciler, spec_of

log = logging.getLogger("thecloud.agent.migrations")
Report = Callable[[dict[str, Any]], Awaitable[None]]


class Migrations:
    def __init__(self, driver: Driver, reconciler: Reconciler, report: Report,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.driver = driver
        self.reconciler = reconciler
        self.report = report
        self.wake = wake
        self._prepared: set[str] = set()  # migration ids reported as prepared
        self._outgoing: dict[str, asyncio.Task[dict[str, Any]]] = {}  # migration id -> migrate_out
        self._reported: set[str] = set()  # migration ids whose outcome the controller has

    async def run_once(self, desired: Desired | None) -> list[str]:
        """Starts what is due; returns what it did (for the reconcile reason)."""
        if desired is None:
            return []
        done = [await self._prepare(item) for item in desired.incoming.values()
                if item.get("phase") == "preparing" and item["migration_id"] not in self._prepared]
        for item in desired.instances.values():
            mig = item.get("migration")
            if mig and mig["id"] not in self._outgoing:
                self._outgoing[mig["id"]] = asyncio.create_task(self._migrate(item, mig))
                done.append(f"live-migrating {item['name']} to host {mig['target'].get('host_id')}")
        for mig_id, task in list(self._outgoing.items()):
            if task.done() and mig_id not in self._reported:
                done.append(await self._send(mig_id, task.result()))
        wanted = {str(i["migration"]["id"]) for i in desired.instances.values() if i.get("migration")}
        for mig_id in [m for m in self._outgoing if m not in wanted and self._outgoing[m].done()]:
            del self._outgoing[mig_id]  # the controller ended it: forget
            self._reported.discard(mig_id)
        self._prepared &= {str(i["migration_id"]) for i in desired.incoming.values()}
        return [d for d in done if d]

    async def _prepare(self, item: dict[str, Any]) -> str:
        body: dict[str, Any] = {"id": item["id"], "migration_id": item["migration_id"]}
        spec = self.reconciler._with_image(item, spec_of(item), Pass())
        if spec is None:
            return f"{item['name']}: waiting for its image before a live migration"
        try:
            body["target"] = await self.driver.prepare_in(dataclasses.replace(spec, generation=int(item["generation"])))
            body["phase"] = "prepared"
        except DriverError as exc:
            body.update(phase="failed", reason=f"target cannot prepare: {exc}")
        try:
            await self.report(body)
        except Exception as exc:  # the link is down: prepare again (idempotent) and report on the next pass
            return f"reporting migration of {item['name']} failed: {exc}"
        self._prepared.add(item["migration_id"])
        return f"prepared live migration of {item['name']}: {body['phase']}"

    async def _migrate(self, item: dict[str, Any], mig: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"id": item["id"], "migration_id": mig["id"]}
        try:
            await self.driver.migrate_out(item["id"], int(item["generation"]), mig["target"])
            body["phase"] = "done"
        except DriverError as exc:
            log.warning("live migration of %s failed: %s", item["id"], exc)
            body.update(phase="failed", reason=str(exc))
        self.wake()
        return body

    async def _send(self, mig_id: str, body: dict[str, Any]) -> str:
        try:
            await self.report(body)
        except Exception as exc:  # retried on the next pass; meanwhile the item stays untouched
            return f"reporting migration {mig_id} failed: {exc}"
        self._reported.add(mig_id)
        return f"live migration {mig_id}: {body['phase']}"
