"""OVSDB access for the ovs backend, through ovsdbapp (the ``ovs`` Python IDL underneath).

One connection per backend object, opened on first use (netd may start before ovsdb-server answers; the
reconciler then reports the error and tries again). Reads take one consistent snapshot of the three tables
the backend looks at; writes are one ovsdbapp transaction, which returns only once ovs-vswitchd has applied
it (ovsdbapp bumps ``next_cfg`` and waits for ``cur_cfg``), so kernel devices exist when a call returns.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from netd.backends.base import BackendError

log = logging.getLogger(__name__)
OFPORT_BASE, OFPORT_SPAN = 1000, 60000  # instance ports' ofports: 1000..60999 (OpenFlow's limit is 65279)


@dataclass(frozen=True)
class Iface:
    name: str
    type: str
    options: dict[str, str]
    external_ids: dict[str, str]
    ofport: int | None
    ofport_request: int | None
    error: str | None
    mtu_request: int | None
    bridge: str | None  # None: an Interface row whose Port is not on any bridge (never ours)


@dataclass(frozen=True)
class Bridge:
    name: str
    datapath_type: str
    fail_mode: str | None
    external_ids: dict[str, str]
    ports: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    bridges: dict[str, Bridge]
    ifaces: dict[str, Iface]  # one Interface per Port here (no bonds), keyed by name


def free_ofport(snap: Snapshot, bridge: str, port_id: str) -> int:
    """An OpenFlow port number for a new instance port: derived from its id (so a number freed by a deleted
    port, which learned flows may still name, is not handed to the next port), the next free one if taken."""
    used = {n for i in snap.ifaces.values() if i.bridge == bridge for n in (i.ofport, i.ofport_request) if n}
    start = int(hashlib.sha256(port_id.encode()).hexdigest()[:8], 16) % OFPORT_SPAN
    return next(OFPORT_BASE + (start + n) % OFPORT_SPAN for n in range(OFPORT_SPAN)
                if OFPORT_BASE + (start + n) % OFPORT_SPAN not in used)


def _optional(value: Any) -> Any:
    """OVSDB optional columns come back as ``[]`` when unset and as the value (or ``[value]``) when set."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class Ovsdb:
    """A lazily opened ovsdbapp connection to one ovsdb-server (``unix:/path/db.sock`` or ``tcp:host:port``)."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._api: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self._background: ThreadPoolExecutor | None = None

    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                # Imported here so that the linuxbridge backend (and the tests) never need ovsdbapp loaded.
                from ovsdbapp.backend.ovs_idl import connection
                from ovsdbapp.schema.open_vswitch import impl_idl

                try:
                    idl = connection.OvsdbIdl.from_server(self.endpoint, "Open_vSwitch")
                    conn = connection.Connection(idl=idl, timeout=self.timeout)
                    api = impl_idl.OvsdbIdl(conn)
                except Exception as exc:
                    raise BackendError(f"cannot reach ovsdb-server at {self.endpoint}: {exc}") from exc
                self._conn, self._api = conn, api
                log.info("connected to ovsdb", extra={"endpoint": self.endpoint})
            return self._api

    def snapshot(self) -> Snapshot:
        api = self.api()
        try:
            with api.transaction(check_error=True) as txn:
                bridges = txn.add(api.db_list(
                    "Bridge", columns=["name", "ports", "datapath_type", "fail_mode", "external_ids"]))
                ports = txn.add(api.db_list("Port", columns=["_uuid", "name", "interfaces"]))
                ifaces = txn.add(api.db_list("Interface", columns=[
                    "_uuid", "name", "type", "options", "external_ids", "ofport", "ofport_request", "error",
                    "mtu_request"]))
        except Exception as exc:
            raise BackendError(f"ovsdb read failed: {exc}") from exc
        port_names = {row["_uuid"]: row["name"] for row in ports.result}
        iface_port = {iface: row["name"] for row in ports.result for iface in row["interfaces"]}
        bridge_of: dict[str, str] = {}
        result_bridges: dict[str, Bridge] = {}
        for row in bridges.result:
            names = sorted(port_names[uuid] for uuid in row["ports"] if uuid in port_names)
            for name in names:
                bridge_of[name] = row["name"]
            result_bridges[row["name"]] = Bridge(
                name=row["name"], datapath_type=row["datapath_type"] or "system",
                fail_mode=_optional(row["fail_mode"]), external_ids=dict(row["external_ids"]), ports=names)
        result_ifaces: dict[str, Iface] = {}
        for row in ifaces.result:
            port = iface_port.get(row["_uuid"])
            result_ifaces[row["name"]] = Iface(
                name=row["name"], type=row["type"], options=dict(row["options"]),
                external_ids=dict(row["external_ids"]), ofport=_optional(row["ofport"]),
                ofport_request=_optional(row["ofport_request"]),
                error=_optional(row["error"]), mtu_request=_optional(row["mtu_request"]),
                bridge=bridge_of.get(port) if port else None)
        return Snapshot(bridges=result_bridges, ifaces=result_ifaces)

    def commit(self, build: Callable[[Any, Any], None], wait_vswitchd: bool = True) -> None:
        """Runs ``build(api, txn)`` (which adds commands to ``txn``) as one transaction. ``wait_vswitchd=False``
        for writes ovs-vswitchd does not act on (``external_ids``): ovsdbapp's usual transaction also waits
        for ovs-vswitchd to reconfigure, tens of milliseconds that such a write does not need."""
        api = self.api()
        try:
            if wait_vswitchd:
                txn_cm = api.transaction(check_error=True)
            else:
                from ovsdbapp.backend.ovs_idl.transaction import Transaction

                txn_cm = Transaction(api, self._conn, check_error=True)
            with txn_cm as txn:
                build(api, txn)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"ovsdb transaction failed: {exc}") from exc

    def commit_soon(self, build: Callable[[Any, Any], None], wait_vswitchd: bool = True) -> Future[None]:
        """``commit`` in a thread of its own: the caller does other work (an OpenFlow change) while
        ovs-vswitchd applies the transaction, and takes the outcome from the future."""
        self.api()
        with self._lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netd-ovsdb")
            return self._background.submit(self.commit, build, wait_vswitchd)

    def close(self) -> None:
        with self._lock:
            if self._background is not None:
                self._background.shutdown()
                self._background = None
            if self._conn is not None:
                try:
                    self._conn.stop(timeout=self.timeout)
                except Exception as exc:  # closing is best effort: the process is going away anyway
                    log.warning("ovsdb connection did not stop cleanly", extra={"error": str(exc)})
            self._conn = self._api = None
