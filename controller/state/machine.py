"""The deterministic state machine applied on every replica in log order."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

# Handler modules register themselves on import.
from controller.state import (  # noqa: F401
    attachments,
    audit,
    backups,
    buckets,
    cluster,
    credentials,
    elastic_ips,
    hosts,
    idempotency,
    images,
    instances,
    keys,
    migrations,
    netindex,
    networks,
    port_groups,
    quotas,
    s3keys,
    secrets,
    security_groups,
    snapshots,
    storage,
    tenants,
    users,
    volumes,
)
from controller.state.command import Command
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.state.registry import HANDLERS

log = logging.getLogger(__name__)

AuditListener = Callable[[dict[str, Any]], None]
UNAUDITED_OPS = frozenset({"noop", "cluster.announce"})


class StateMachine:
    """Applies commands to :class:`StateData`. Readers take ``lock`` while they look at ``data``."""

    def __init__(self) -> None:
        self.data = StateData()
        self.lock = threading.RLock()
        self._listeners: list[AuditListener] = []
        self._apply_hooks: list[Callable[[], None]] = []

    def add_listener(self, listener: AuditListener) -> None:
        """Called (on the applying thread) with every new audit record. Local side effect only."""
        self._listeners.append(listener)

    def add_apply_hook(self, hook: Callable[[], None]) -> None:
        """Called (on the applying thread, outside the lock) after every applied batch. Local side effect only."""
        self._apply_hooks.append(hook)

    def apply_batch(self, commands: list[Command]) -> list[dict[str, Any]]:
        with self.lock:
            results = [self._apply_one(cmd) for cmd in commands]
        for hook in self._apply_hooks:
            try:
                hook()
            except Exception:
                log.exception("apply hook failed")
        return results

    def replace(self, data: StateData) -> None:
        with self.lock:
            self.data = data

    def _apply_one(self, cmd: Command) -> dict[str, Any]:
        data = self.data
        ctx = cmd["ctx"]
        data.revision += 1
        try:
            replay = idempotency.lookup(data, ctx)
        except ApplyError as err:  # the key was used for another request: refused, and audited like any refusal
            self._audit(cmd, err.status)
            return {"ok": False, "error": err.to_dict()}
        if replay is not None:
            return {**replay, "replayed": True}
        status = 200
        outcome: dict[str, Any]
        try:
            handler = HANDLERS.get(cmd["op"])
            if handler is None:
                raise ApplyError(400, "bad_request", f"unknown operation {cmd['op']!r}")
            credentials.verify(data, ctx)
            if cmd["op"] == "audit.record":
                status = int(cmd["args"]["status"])
            outcome = {"ok": True, "result": copy.deepcopy(handler(data, cmd["args"], ctx))}
        except ApplyError as err:
            status = err.status
            outcome = {"ok": False, "error": err.to_dict()}
        except Exception as exc:  # a bug, but the same on every replica: refuse, never diverge
            log.exception("apply of %s failed", cmd["op"])
            status = 500
            outcome = {"ok": False, "error": {"status": 500, "code": "internal", "message": str(exc)}}
        self._audit(cmd, status)
        if cmd["op"] != "audit.record":
            idempotency.remember(data, ctx, outcome)
        return outcome

    def _audit(self, cmd: Command, status: int) -> None:
        ctx = cmd["ctx"]
        if cmd["op"] in UNAUDITED_OPS or not ctx.get("audit_action"):
            return
        record = audit.append(self.data, ctx, status)
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:
                log.exception("audit listener failed")
