"""Leader and member duties, run in a loop. Each pass returns a readable reason (tests assert on it)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass

from controller.security.tokens import hash_key_secret, new_api_key, parse_api_key
from controller.services.compute_duties import ComputeDuties
from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.image_duties import ImageDuties
from controller.services.runtime import Runtime
from controller.store.base import StoreUnavailable
from controller.store.snapshot_file import SnapshotError, decode_backup

log = logging.getLogger(__name__)
NOTHING = "nothing to do"


@dataclass
class DutyConfig:
    api_address: str
    admin_key_file: str
    restore_file: str | None = None
    agent_address: str = ""


class Duties:
    def __init__(self, rt: Runtime, config: DutyConfig) -> None:
        self._rt = rt
        self._config = config
        self._compute = ComputeDuties(rt)
        self._images = ImageDuties(rt)

    def _rc(self, what: str) -> RequestContext:
        return RequestContext(request_id=f"duty-{what}-{uuid.uuid4().hex[:8]}", caller=SYSTEM)

    async def close(self) -> None:
        """Stops what runs in the background (image copies)."""
        await self._images.close()

    async def run_once(self) -> str:
        st = self._rt.store.status()
        if st.leader is None:
            return "no leader elected; waiting"
        try:
            if st.role == "leader":
                reason = await self._leader_duties(st.term)
                if reason:
                    return reason
            announced = await self._announce(st.self_address)
            if announced != NOTHING:
                return announced
            return await self._images.run_once(st.self_address, st.role == "leader") or NOTHING
        except (StoreUnavailable, ServiceError) as exc:
            return f"duty failed, will retry: {exc}"

    async def _leader_duties(self, term: int) -> str | None:
        with self._rt.view() as data:
            bootstrapped = bool(data.meta.get("admin_bootstrapped"))
            empty = data.is_empty()
        restore = self._config.restore_file
        if restore and empty and not bootstrapped and await asyncio.to_thread(os.path.exists, restore):
            return await self._restore(restore)
        if not bootstrapped:
            return await self._bootstrap_admin()
        return await self._compute.run_once(term)

    async def _restore(self, path: str) -> str:
        """Restores the staged backup. While one is staged, nothing else (no admin bootstrap) happens."""
        try:
            meta, state = decode_backup(await asyncio.to_thread(_read_bytes, path))
        except (OSError, SnapshotError) as exc:
            return f"staged restore {path} is unusable ({exc}); replace or remove it"
        await self._rt.propose(self._rc("restore"), "cluster.restore", {"state": state},
                               action="cluster.restore", target=os.path.basename(path), tenant_id=None)
        os.replace(path, path + ".applied")
        return f"restored backup taken at revision {meta.get('revision')}"

    async def _bootstrap_admin(self) -> str:
        path = self._config.admin_key_file
        token = _read_or_create_admin_key(path)
        parsed = parse_api_key(token)
        if parsed is None:
            raise ServiceError(500, "internal", f"admin key file {path} does not hold a thecloud API key")
        key_id, secret = parsed
        args = {"tenant_id": uuid.uuid4().hex, "user_id": uuid.uuid4().hex, "key_id": key_id,
                "secret_hash": hash_key_secret(secret), "cluster_id": uuid.uuid4().hex}
        out = await self._rt.propose(self._rc("bootstrap"), "cluster.bootstrap_admin", args,
                                     action="cluster.bootstrap", target="admin", tenant_id=None)
        if out.result.get("created"):
            return f"bootstrapped admin user with the key in {path}"
        return "admin already bootstrapped"

    async def _announce(self, raft_address: str) -> str:
        with self._rt.view() as data:
            member = data.members.get(raft_address, {})
            known = (member.get("api_address"), member.get("agent_address", ""))
        if known == (self._config.api_address, self._config.agent_address):
            return NOTHING
        await self._rt.propose(self._rc("announce"), "cluster.announce",
                               {"raft_address": raft_address, "api_address": self._config.api_address,
                                "agent_address": self._config.agent_address},
                               action="", target=raft_address, tenant_id=None)
        return f"announced api address {self._config.api_address}"


def _read_or_create_admin_key(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    token = new_api_key().token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("created admin key file %s", path)
    return token


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
