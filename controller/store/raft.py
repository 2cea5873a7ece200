"""Raft-replicated store on pysyncobj.

pysyncobj runs its own tick thread; with ``appendEntriesUseBatch=False`` a pipe wakes that thread on
every new command, so commit latency is set by the network, not by a timer. Results come back to the
asyncio loop through ``call_soon_threadsafe``. Writes are grouped by :class:`Batcher`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.syncobj import SyncObjException

from controller.state.command import Command
from controller.state.machine import StateMachine
from controller.store import raft_journal
from controller.store.base import (
    MembershipError,
    Store,
    StoreStatus,
    StoreUnavailable,
    TransferError,
    TransferResult,
)
from controller.store.batcher import Batcher
from controller.store.raft_guard import PreAuthReaper
from controller.store.raft_transfer import SyncObjView, TransferDriver, TransferOutcome
from controller.store.snapshot_file import decode_dump, encode_dump, write_atomic

log = logging.getLogger(__name__)

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.dump"
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL: "the leader's queue is full",
    FAIL_REASON.MISSING_LEADER: "no Raft leader is elected",
    FAIL_REASON.DISCARDED: "the leader changed before the write was committed",
    FAIL_REASON.NOT_LEADER: "the leader changed before the write was committed",
    FAIL_REASON.REQUEST_DENIED: "the leader refused the request",
}
# Errors after which the command was certainly not appended anywhere: retried while a leader is elected.
_NOT_SENT = frozenset({FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER})


@dataclass
class RaftTuning:
    """Timers in seconds. Defaults give sub-second failover on a LAN."""

    tick_period: float = 0.02
    append_entries_period: float = 0.05
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.7
    connection_timeout: float = 1.5
    connection_retry: float = 0.5
    leader_fallback: float = 1.5
    commit_timeout: float = 3.0
    compaction_min_entries: int = 5000
    compaction_min_seconds: int = 300
    # Batches (Raft entries) this node has in flight at once. Each entry costs about 2 ms of CPU over the
    # cluster (messages, encryption, a journal sync on every node), so one at a time, with everything that
    # arrives meanwhile grouped into the next, beats two on a small machine (tests/bench: higher throughput
    # and lower p95 for reads and writes, on the leader and spread over all nodes).
    max_inflight_batches: int = 1
    # A leadership transfer that has not finished after this long is abandoned (the leader takes writes again).
    transfer_timeout: float = 1.0
    # A write that found no leader (an election, a leadership transfer) is retried for this long before a 503.
    leader_wait: float = 1.0


class _ReplicatedMachine(SyncObj):
    def __init__(self, self_address: str, peers: list[str], conf: SyncObjConf, machine: StateMachine,
                 transfer_timeout: float) -> None:
        self._machine = machine
        # Set before pysyncobj's constructor, which starts the tick thread (and leaves these out of its dumps).
        self.transfer = TransferDriver(SyncObjView(self, self_address), transfer_timeout, conf.raftMaxTimeout)
        super().__init__(self_address, peers, conf)
        if peers:
            # A (re)started member waits for the leader to reach it before its first election: the leader
            # connects to it only every connectionRetryTime, and a member restarted in a rolling upgrade that
            # hears nobody within its election timeout would otherwise depose the leader (pysyncobj has no
            # pre-vote). pysyncobj's tick thread sleeps 0.1 s before its first tick, so this lands first.
            self._SyncObj__raftElectionDeadline += conf.connectionRetryTime

    @replicated
    def apply_batch(self, commands: list[Command]) -> list[dict[str, Any]]:
        return self._machine.apply_batch(commands)

    def _onTick(self, timeToWait: float = 0.0) -> None:
        """Reads what arrived before the tick judges its timers.

        pysyncobj's tick first checks the election deadline and only then polls its sockets. After this
        process stood still for longer than the election timeout (a long garbage collection, or a CPU shared
        with many busy processes), a follower therefore started an election although the leader's
        append_entries had kept arriving and were waiting to be read: an election for nothing, and every
        agent reconnecting to a new leader. Polling first lets those messages reset the deadline; a leader
        that really is gone still loses its followers one election timeout later.
        """
        self._poller.poll(0)
        super()._onTick(timeToWait)

    def _checkCommandsToApply(self) -> None:
        """Commits a lone leader's new entries on the next tick instead of one tick period later.

        pysyncobj appends new commands near the end of a tick and commits at the start of the next one. With
        peers, their append_entries replies wake that tick; a one-node cluster has no replies to wait for, so
        its tick slept a whole ``tick_period`` (20 ms) before committing every write, on top of the journal
        sync. Waking the poller through pysyncobj's own pipe makes the next tick run at once.

        While a leadership transfer is under way, new commands stay queued (see raft_transfer).
        """
        if self.transfer.holds_writes():
            return
        super()._checkCommandsToApply()
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if (notifier is not None and not self._SyncObj__otherNodes and self._isLeader()
                and self._SyncObj__raftCommitIndex < self._SyncObj__getCurrentLogIndex()
                and self._SyncObj__getCurrentLogTerm() == self._SyncObj__raftCurrentTerm):  # commits next tick
            notifier.notify()

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:
        """Keeps a follower's nextIndex from moving back on a successful append_entries reply.

        pysyncobj advances nextIndex when it *sends* entries, but on every success reply it sets nextIndex
        to the index in that reply. With more than one entry in flight (the batcher keeps two), the reply to
        the older entry moves nextIndex back, the leader re-sends entries the follower already has, and the
        follower truncates its log from there and appends them again: extra journal syncs, a CRITICAL
        "truncating already-applied log entries" line each time, and, if the re-sent message holds fewer
        entries than were truncated, a follower that briefly drops entries it had acknowledged. As in other
        Raft implementations, a success reply may only move nextIndex forward; a rejection (``reset``) still
        moves it back.

        Leadership-transfer messages go to :class:`TransferDriver`.
        """
        if self.transfer.on_message(str(node.id), message):
            return
        sent = None
        if message.get("type") == "next_node_idx" and message.get("success") and not message.get("reset"):
            sent = self._SyncObj__raftNextIndex.get(node)
        if message.get("type") == "append_entries" and message.get("transmission") == "finish":
            message = self._finished_transmission(message)
        super()._SyncObj__onMessageReceived(node, message)
        if sent is not None:
            next_index = self._SyncObj__raftNextIndex
            if node in next_index and next_index[node] < sent:
                next_index[node] = sent


    def _finished_transmission(self, message: dict[str, Any]) -> dict[str, Any]:
        """Works around pysyncobj sending "finish" too early for an entry split into parts.

        An entry of ``appendEntriesBatchSizeBytes`` or more (a batch of placements can be) is pickled and sent in
        parts: "start", "process" ..., "finish". pysyncobj labels a part "finish" once the *command* would end
        in it, but it splits the pickled *entry*, which is a few bytes longer: when those bytes spill into one
        more part, the follower decodes a truncated entry and that tick fails with an error (dropping whatever
        else it had to handle); only by luck, because the failed decode left its buffer as it was, does the last
        part (also labelled "finish") complete it. Here a "finish" whose data does not decode yet is taken as a
        "process", and a complete one is handed on decoded, as a plain append of that entry (so it is not decoded
        twice).
        """
        received = getattr(self, "_SyncObj__recvTransmission")  # noqa: B009 - pysyncobj's private buffer
        data = (received if isinstance(received, bytes) else b"") + message["data"]
        part_size = self._SyncObj__conf.appendEntriesBatchSizeBytes
        try:
            entry = pickle.loads(data)  # noqa: S301 - the Raft peers' own wire format (pysyncobj, authenticated)
        except Exception:  # a truncated pickle can fail in many ways
            if len(message["data"]) < part_size:  # a short part is the last one: really broken, as pysyncobj says
                return message
            return {**message, "transmission": "process"}
        self._SyncObj__recvTransmission = ""
        plain = {k: v for k, v in message.items() if k not in ("transmission", "data")}
        plain["entries"] = [entry]
        return plain


class RaftStore(Store):
    def __init__(self, data_dir: str, self_address: str, peers: list[str], password: str,
                 tuning: RaftTuning | None = None) -> None:
        self.machine = StateMachine()
        self._data_dir = data_dir
        self._self_address = self_address
        self._peers = [p for p in peers if p != self_address]
        self._password = password
        self._tuning = tuning or RaftTuning()
        self._obj: _ReplicatedMachine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batcher: Batcher | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        raft_journal.install()
        self._loop = asyncio.get_running_loop()
        t = self._tuning
        dump_path = os.path.join(self._data_dir, DUMP_FILE)
        conf = SyncObjConf(
            password=self._password,
            autoTick=True,
            autoTickPeriod=t.tick_period,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=t.append_entries_period,
            raftMinTimeout=t.election_timeout_min,
            raftMaxTimeout=t.election_timeout_max,
            connectionTimeout=t.connection_timeout,
            connectionRetryTime=t.connection_retry,
            leaderFallbackTimeout=t.leader_fallback,
            commandsWaitLeader=False,
            journalFile=os.path.join(self._data_dir, JOURNAL_FILE),
            fullDumpFile=dump_path,
            serializer=self._serialize,
            deserializer=self._deserialize,
            useFork=False,
            dynamicMembershipChange=True,
            bindAddress=self._self_address,
            maxBindRetries=3,
            bindRetryTime=0.5,
            logCompactionMinEntries=t.compaction_min_entries,
            logCompactionMinTime=t.compaction_min_seconds,
        )
        await asyncio.to_thread(self._finish_interrupted_compaction, dump_path)
        # Built on the loop's thread on purpose: pysyncobj's tick thread stops when its creator exits.
        obj = _ReplicatedMachine(self._self_address, self._peers, conf, self.machine, t.transfer_timeout)
        try:
            await asyncio.to_thread(obj.waitBinded)
        except SyncObjException as exc:
            obj.destroy()
            raise OSError(f"cannot listen for Raft on {self._self_address}: address in use or invalid") from exc
        obj.addOnTickCallback(PreAuthReaper(obj._SyncObj__transport, t.connection_timeout))
        obj.addOnTickCallback(obj.transfer.tick)
        self._obj = obj
        self._batcher = Batcher(self._submit, max_inflight=self._tuning.max_inflight_batches)
        self._batcher.start()

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
        if self._obj is not None:
            obj, self._obj = self._obj, None
            await asyncio.to_thread(obj.destroy_synchronous)

    def _finish_interrupted_compaction(self, dump_path: str) -> None:
        journal_path = os.path.join(self._data_dir, JOURNAL_FILE)
        if not (os.path.exists(dump_path) and os.path.exists(journal_path)):
            return
        with open(dump_path, "rb") as f:
            _, (last, prev, _cluster) = decode_dump(f.read())
        log.info("raft journal check: %s", raft_journal.reconcile_with_dump(journal_path, last, prev))

    # -- snapshots (called on the pysyncobj tick thread) -----------------------------------------
    def _serialize(self, file_name: str, raft_data: Any) -> None:
        with self.machine.lock:
            blob = encode_dump(self.machine.data, raft_data)
        write_atomic(file_name, blob)

    def _deserialize(self, file_name: str) -> Any:
        with open(file_name, "rb") as f:
            state, raft_data = decode_dump(f.read())
        self.machine.replace(state)
        return raft_data

    # -- writes and reads ------------------------------------------------------------------------
    def _require(self) -> _ReplicatedMachine:
        if self._obj is None or self._batcher is None:
            raise StoreUnavailable("the store is not running")
        return self._obj

    async def _call(self, start: Callable[[Callable[[Any, int], None]], None], what: str) -> tuple[Any, int]:
        """Starts a pysyncobj operation whose callback fires on the tick thread; awaits it with a deadline."""
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[tuple[Any, int]] = loop.create_future()

        def done(result: Any, error: int) -> None:
            loop.call_soon_threadsafe(_resolve, fut, result, error)

        start(done)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self._tuning.commit_timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"the {what} was not committed within {self._tuning.commit_timeout:.0f}s (no quorum?); "
                "it may still be applied", retry_after=1.0) from None

    async def _submit(self, commands: list[Command]) -> list[dict[str, Any]]:
        obj = self._require()
        give_up = asyncio.get_running_loop().time() + self._tuning.leader_wait
        while True:
            result, error = await self._call(lambda done: obj.apply_batch(commands, callback=done), "write")
            if error not in _NOT_SENT or asyncio.get_running_loop().time() >= give_up:
                break
            await asyncio.sleep(self._tuning.tick_period)
        if error != FAIL_REASON.SUCCESS:
            reason = _NOT_APPLIED.get(error, "the leader changed; the outcome of the write is unknown")
            raise StoreUnavailable(reason, retry_after=1.0)
        outcomes: list[dict[str, Any]] = result
        return outcomes

    async def write(self, command: Command) -> dict[str, Any]:
        self._require()
        assert self._batcher is not None
        outcome = await self._batcher.enqueue(command)
        assert outcome is not None
        return outcome

    async def barrier(self) -> None:
        self._require()
        assert self._batcher is not None
        await self._batcher.enqueue(None)

    # -- status and membership -------------------------------------------------------------------
    def is_leader(self) -> bool:
        """Cheap (no status report is built): asked on every agent heartbeat."""
        return bool(self._require()._isLeader())

    def status(self) -> StoreStatus:
        obj = self._require()
        st = obj.getStatus()
        leader = st.get("leader")
        others = sorted(n.address for n in obj.otherNodes)
        return StoreStatus(
            role=_ROLES.get(st.get("state", 0), "follower"),
            leader=leader.address if leader is not None else None,
            term=int(st.get("raft_term", 0)),
            commit_index=int(st.get("commit_idx", 0)),
            applied_index=int(st.get("last_applied", 0)),
            self_address=self._self_address,
            members=sorted([self._self_address, *others]),
            connected=[a for a in others if obj.isNodeConnected(_node_of(obj, a))],
        )

    async def _membership(self, action: str, address: str) -> None:
        obj = self._require()
        if action == "add":
            _, error = await self._call(lambda done: obj.addNodeToCluster(address, callback=done), "membership change")
        else:
            _, error = await self._call(lambda done: obj.removeNodeFromCluster(address, callback=done),
                                        "membership change")
        if error == FAIL_REASON.REQUEST_DENIED:
            raise MembershipError(
                "the leader refused the change: another membership change is still in progress, the node is "
                "already in that state, or it is the leader itself")
        if error != FAIL_REASON.SUCCESS:
            raise StoreUnavailable(_NOT_APPLIED.get(error, "the leader changed during the membership change"))

    async def add_member(self, address: str) -> None:
        await self._membership("add", address)

    async def remove_member(self, address: str) -> None:
        await self._membership("rem", address)

    async def transfer_leadership(self, to: str | None = None) -> TransferResult:
        obj = self._require()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[TransferOutcome] = loop.create_future()

        def done(outcome: TransferOutcome) -> None:
            loop.call_soon_threadsafe(_resolve_outcome, fut, outcome)

        obj.transfer.submit(to, done)
        try:  # the driver always answers within its own bound; this one only guards against a stopped tick thread
            outcome = await asyncio.wait_for(asyncio.shield(fut), obj.transfer.timeout + 3.0)
        except TimeoutError:
            raise TransferError("the Raft node did not answer the transfer request", "unavailable") from None
        if not outcome.ok or outcome.leader is None:
            raise TransferError(outcome.message, outcome.kind)
        return TransferResult(outcome.leader, outcome.term, outcome.previous_leader, outcome.seconds)


def _node_of(obj: SyncObj, address: str) -> Any:
    for node in obj.otherNodes:
        if node.address == address:
            return node
    return None


def _resolve_outcome(fut: asyncio.Future[TransferOutcome], outcome: TransferOutcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


def _resolve(fut: asyncio.Future[tuple[Any, int]], result: Any, error: int) -> None:
    if not fut.done():
        fut.set_result((result, error))
