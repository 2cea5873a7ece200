"""The ovs backend's pieces of work in flight: ovsdbapp commands gathered into one transaction (``Op``), and a
new port's plug that ``OvsBackend.prepare_port`` started and ``plug_port`` finishes (``Prepared``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from netd.backends.base import BackendError

log = logging.getLogger("thecloud.netd.ovs")


@dataclass(frozen=True)
class Op:
    """One ovsdbapp command (``api.<method>(*args, **kwargs)``) for a transaction."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def add_to(self, api: Any, txn: Any) -> None:
        txn.add(getattr(api, self.method)(*self.args, **self.kwargs))

    @property
    def for_vswitchd(self) -> bool:
        """False for a write of ``external_ids`` only, which ovs-vswitchd ignores (no need to wait for it)."""
        return not (self.method == "db_set" and all(column == "external_ids" for column, _ in self.args[2:]))


def cmd(method: str, *args: Any, **kwargs: Any) -> Op:
    return Op(method, args, kwargs)


def builder(ops: list[Op]) -> Any:
    def build(api: Any, txn: Any) -> None:
        for op in ops:
            op.add_to(api, txn)

    return build


@dataclass
class Prepared:
    """A new port's plug as ``prepare_port`` left it for ``plug_port``."""

    bridge: str
    mtu: int
    ofport: int
    found: dict[str, int]  # indexes of the hybrid bridge and uplink
    flows: Callable[[], list[str]]  # finishes the flow change
    adding: Future[None]  # the transaction adding the uplink's OVS end

    def abandon(self) -> None:
        """Finishes what was started, whatever its outcome (the next pass repairs the port)."""
        settle([self.adding])
        try:
            self.flows()
        except BackendError as exc:
            log.warning("flow change of an abandoned port plug failed", extra={"error": str(exc)})


def settle(futures: list[Future[None]]) -> None:
    """Waits for background transactions whose outcome no longer matters (the step failed anyway)."""
    for future in futures:
        try:
            future.result()
        except BackendError as exc:
            log.warning("ovsdb transaction of a failed step failed too", extra={"error": str(exc)})
