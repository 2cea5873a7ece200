"""Raft leadership transfer (Raft thesis §3.10, "TimeoutNow"), driven on pysyncobj's tick thread.

pysyncobj 0.3.17 has the wire half: ``transferLeadership(node)`` sends ``timeout_now`` over the authenticated,
encrypted Raft connection, and a follower that gets it from its own leader starts an election at once (a new
term) and ignores that leader's heartbeats meanwhile. But it refuses a target that is not fully caught up, keeps
accepting writes, and reports "success" as soon as the message is *sent*. :class:`TransferDriver` adds the rest:

1. it holds new writes on the leader: pysyncobj's command queue is not drained, so local and forwarded commands
   wait there (nothing is refused, nothing is lost);
2. it waits until everything appended is committed and the target's matchIndex is the last log index;
3. it sends ``timeout_now``;
4. it reports success once another member leads at a higher term; the held commands then drain and are
   forwarded to the new leader;
5. past its deadline it releases the writes and reports why it failed.

A follower asked for a transfer forwards the request to the leader over the same Raft connection
(``tc_transfer`` / ``tc_transfer_done`` messages) and reports the leader's answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from pysyncobj import FAIL_REASON, SyncObj

log = logging.getLogger(__name__)

OK, CONFLICT, NOT_FOUND, UNAVAILABLE = "ok", "conflict", "not_found", "unavailable"
REQUEST, REPLY = "tc_transfer", "tc_transfer_done"
FORWARD_MARGIN = 1.0  # seconds a forwarding follower waits for the leader's answer beyond the transfer bound


@dataclass(frozen=True)
class TransferOutcome:
    kind: str  # OK | CONFLICT | NOT_FOUND | UNAVAILABLE
    message: str
    leader: str | None = None
    term: int = 0
    previous_leader: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == OK


Callback = Callable[[TransferOutcome], None]


@dataclass(frozen=True)
class Follower:
    address: str
    match_index: int
    connected: bool
    silent_for: float  # seconds since its last answer to the leader


class RaftView(Protocol):
    """What the driver reads and does on the Raft node. Everything but ``wake`` runs on the tick thread."""

    self_address: str

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None: ...

    def term(self) -> int: ...

    def last_index(self) -> int: ...

    def commit_index(self) -> int: ...

    def followers(self) -> list[Follower]: ...

    def heartbeat_now(self) -> None: ...

    def timeout_now(self, address: str) -> bool: ...

    def send(self, address: str, message: dict[str, Any]) -> None: ...

    def wake(self) -> None: ...


@dataclass
class _Request:
    to: str | None
    callback: Callback
    forwarded: bool = False


@dataclass
class _Active:
    target: str
    explicit: bool
    started: float
    deadline: float
    term: int
    callback: Callback
    sent: bool = False


class TransferDriver:
    def __init__(self, view: RaftView, timeout: float, healthy_within: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._view = view
        self.timeout = timeout
        self._healthy_within = healthy_within
        self._clock = clock
        self._requests: deque[_Request] = deque()
        self._active: _Active | None = None
        self._remote: dict[int, tuple[float, Callback]] = {}
        self._rids = 0
        self._lock = threading.Lock()

    # -- any thread ------------------------------------------------------------------------------
    def submit(self, to: str | None, callback: Callback) -> None:
        """Asks for a transfer to ``to`` (a Raft address; None: the most up-to-date healthy follower)."""
        with self._lock:
            self._requests.append(_Request(to, callback))
        self._view.wake()

    # -- tick thread -----------------------------------------------------------------------------
    def holds_writes(self) -> bool:
        return self._active is not None

    def tick(self) -> None:
        now = self._clock()
        while True:
            with self._lock:
                if not self._requests:
                    break
                request = self._requests.popleft()
            self._start(request, now)
        for rid, (deadline, callback) in list(self._remote.items()):
            if now >= deadline:
                del self._remote[rid]
                callback(TransferOutcome(UNAVAILABLE, "the leader did not answer the transfer request in time"))
        if self._active is not None:
            self._advance(self._active, now)

    def on_message(self, sender: str, message: dict[str, Any]) -> bool:
        """Handles this module's messages; False for anything else (pysyncobj's own messages)."""
        kind = message.get("type")
        if kind == REQUEST:
            rid, to = message.get("rid"), message.get("to")
            if isinstance(rid, int) and (to is None or isinstance(to, str)):
                self._start(_Request(to, lambda o: self._view.send(sender, {"type": REPLY, "rid": rid, **asdict(o)}),
                                     forwarded=True), self._clock())
            return True
        if kind == REPLY:
            entry = self._remote.pop(message.get("rid"), None)  # type: ignore[arg-type]
            if entry is not None:
                names = {f.name for f in fields(TransferOutcome)}
                entry[1](TransferOutcome(**{k: v for k, v in message.items() if k in names}))
            return True
        return False

    def _start(self, request: _Request, now: float) -> None:
        view = self._view
        if not view.is_leader():
            self._forward(request, now)
            return
        if self._active is not None:
            request.callback(TransferOutcome(CONFLICT, f"a leadership transfer to {self._active.target} is already "
                                             "in progress"))
            return
        if request.to == view.self_address:
            request.callback(TransferOutcome(OK, f"{view.self_address} is already the leader",
                                             view.self_address, view.term(), view.self_address))
            return
        target = self._choose(request.to)
        if isinstance(target, TransferOutcome):
            request.callback(target)
            return
        self._active = _Active(target.address, request.to is not None, now, now + self.timeout, view.term(),
                               request.callback)
        view.heartbeat_now()
        log.info("leadership transfer started", extra={"target": target.address, "term": view.term()})

    def _forward(self, request: _Request, now: float) -> None:
        leader = self._view.leader()
        if request.forwarded or leader is None or leader == self._view.self_address:
            what = f"{self._view.self_address} is not the leader" if request.forwarded else "no Raft leader is elected"
            request.callback(TransferOutcome(UNAVAILABLE, f"{what}; try again"))
            return
        self._rids += 1
        self._remote[self._rids] = (now + self.timeout + FORWARD_MARGIN, request.callback)
        self._view.send(leader, {"type": REQUEST, "rid": self._rids, "to": request.to})

    def _choose(self, to: str | None) -> Follower | TransferOutcome:
        followers = self._view.followers()
        healthy = [f for f in followers if f.connected and f.silent_for <= self._healthy_within]
        if to is not None:
            match = [f for f in followers if f.address == to]
            if not match:
                return TransferOutcome(NOT_FOUND, f"{to} is not a member of the Raft cluster")
            if match[0] not in healthy:
                return TransferOutcome(CONFLICT, f"{to} is not connected to the leader; leadership stays with "
                                       f"{self._view.self_address}")
            return match[0]
        if not healthy:
            why = "this is the only member" if not followers else "no follower is connected to the leader"
            return TransferOutcome(CONFLICT, f"no eligible follower to hand leadership to: {why}")
        return max(healthy, key=lambda f: (f.match_index, -f.silent_for))

    def _advance(self, active: _Active, now: float) -> None:
        view = self._view
        leader, term = view.leader(), view.term()
        if not view.is_leader() and leader is not None and leader != view.self_address and term > active.term:
            if active.explicit and leader != active.target:
                self._finish(TransferOutcome(CONFLICT, f"{leader} won the election instead of {active.target}",
                                             leader, term, view.self_address, now - active.started))
            else:
                self._finish(TransferOutcome(OK, f"{leader} leads term {term}", leader, term, view.self_address,
                                             now - active.started))
            return
        if view.is_leader() and not active.sent:
            target = next((f for f in view.followers() if f.address == active.target), None)
            if target is None:
                self._finish(TransferOutcome(CONFLICT, f"{active.target} left the cluster during the transfer",
                                             view.self_address, term, view.self_address, now - active.started))
                return
            last = view.last_index()
            if target.match_index >= last and view.commit_index() >= last:
                active.sent = view.timeout_now(active.target)
        if now >= active.deadline:
            bound = f"{self.timeout:.1f}s"
            if view.is_leader():
                self._finish(TransferOutcome(CONFLICT, f"the transfer to {active.target} did not finish within "
                                             f"{bound}; {view.self_address} stays leader and accepts writes again",
                                             view.self_address, term, view.self_address, now - active.started))
            else:
                self._finish(TransferOutcome(UNAVAILABLE, f"{view.self_address} stepped down but no new leader was "
                                             f"elected within {bound}", None, term, view.self_address,
                                             now - active.started))

    def _finish(self, outcome: TransferOutcome) -> None:
        active, self._active = self._active, None
        log.info("leadership transfer finished", extra={"outcome": outcome.kind, "detail": outcome.message,
                                                        "seconds": round(outcome.seconds, 3)})
        if active is not None:
            active.callback(outcome)


class SyncObjView:
    """:class:`RaftView` over pysyncobj's (private) leader state; built before pysyncobj's constructor runs."""

    def __init__(self, obj: SyncObj, self_address: str) -> None:
        self._obj = obj
        self.self_address = self_address

    def is_leader(self) -> bool:
        return bool(self._obj._isLeader())

    def leader(self) -> str | None:
        node = self._obj._getLeader()
        return str(node.id) if node is not None else None

    def term(self) -> int:
        return int(self._obj.raftCurrentTerm)

    def last_index(self) -> int:
        return int(self._obj._SyncObj__getCurrentLogIndex())

    def commit_index(self) -> int:
        return int(self._obj.raftCommitIndex)

    def followers(self) -> list[Follower]:
        obj = self._obj
        match, answered = obj._SyncObj__raftMatchIndex, obj._SyncObj__lastResponseTime
        connected, now = obj._SyncObj__connectedNodes, time.monotonic()
        return [Follower(str(n.id), int(match.get(n, 0)), n in connected, now - answered.get(n, float("-inf")))
                for n in obj.otherNodes]

    def heartbeat_now(self) -> None:
        self._obj._SyncObj__newAppendEntriesTime = 0  # the next tick sends append_entries to every follower

    def timeout_now(self, address: str) -> bool:
        errors: list[int] = []
        self._obj.transferLeadership(address, callback=lambda _result, error: errors.append(error))
        return errors == [FAIL_REASON.SUCCESS]

    def send(self, address: str, message: dict[str, Any]) -> None:
        node = next((n for n in self._obj.otherNodes if n.id == address), None)
        if node is not None:
            self._obj._SyncObj__transport.send(node, message)

    def wake(self) -> None:
        notifier = getattr(self._obj, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify()
