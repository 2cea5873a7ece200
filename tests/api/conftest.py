"""An in-process API server: the real aiohttp app over a MemoryStore, on a loopback port in a thread.

Tests talk to it over real HTTP with the sync SDK (CloudClient) or httpx. The server is shared by the
whole session; tests isolate themselves by creating uniquely named tenants, users and secrets.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web

from controller.api.app import build_app
from controller.api.events import EventBus
from controller.services.duties import Duties, DutyConfig
from controller.services.liveness import Liveness
from controller.services.runtime import Runtime
from controller.store.memory import MemoryStore
from shared.blobs import BlobDir
from shared.sdk import CloudClient

T = TypeVar("T")
CLUSTER_SECRET = b"x" * 64
# The MemoryStore's "raft address": a HOST:PORT so that membership routes can name it.
RAFT_ADDRESS = "127.0.0.1:9"


class FakeClock:
    """time.time() plus an adjustable offset (used to age API keys and tokens)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class ApiServer:
    url: str
    admin_key: str
    rt: Runtime
    bus: EventBus
    clock: FakeClock
    loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner | None = field(default=None, repr=False)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop (from the test thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, api_key: str | None = None, token: str | None = None) -> CloudClient:
        """An SDK client; by default authenticated as the cluster admin."""
        if api_key is None and token is None:
            api_key = self.admin_key
        return CloudClient(self.url, api_key=api_key, token=token, retries_on_503=0)

    @contextmanager
    def clock_shifted(self, seconds: float) -> Iterator[None]:
        self.clock.offset += seconds
        try:
            yield
        finally:
            self.clock.offset -= seconds


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _start(rt: Runtime, bus: EventBus, key_file: Path) -> tuple[web.AppRunner, str]:
    bus.bind(asyncio.get_running_loop())
    rt.store.machine.add_listener(bus.publish_threadsafe)
    runner = web.AppRunner(build_app(rt, bus), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    duties = Duties(rt, DutyConfig(api_address=f"{host}:{port}", admin_key_file=str(key_file)))
    reasons = [await duties.run_once() for _ in range(3)]
    assert reasons[0].startswith("bootstrapped admin user"), reasons
    assert reasons[-1] == "nothing to do", reasons
    return runner, f"http://{host}:{port}"


@contextmanager
def serve_api(key_dir: Path) -> Iterator[ApiServer]:
    """An in-process API server (own store, clock and loop thread) with the cluster admin bootstrapped."""
    clock = FakeClock()
    rt = Runtime(MemoryStore(address=RAFT_ADDRESS), CLUSTER_SECRET, clock=clock)
    rt.images = BlobDir(str(key_dir / "images"))  # the controller's image blob store
    bus = EventBus()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_serve_forever, args=(loop,), name="api-server", daemon=True)
    thread.start()
    key_file = key_dir / "admin.key"
    try:
        runner, url = asyncio.run_coroutine_threadsafe(_start(rt, bus, key_file), loop).result(30)
        server = ApiServer(url=url, admin_key=key_file.read_text().strip(), rt=rt, bus=bus, clock=clock,
                           loop=loop, _runner=runner)
        yield server
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive(), "the API server thread did not stop"
        loop.close()


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The running in-process API server with the cluster admin bootstrapped."""
    with serve_api(tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture(scope="session")
def http(api: ApiServer) -> Iterator[httpx.Client]:
    """A raw HTTP client without credentials."""
    with httpx.Client(base_url=api.url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
def admin(api: ApiServer) -> Iterator[CloudClient]:
    """The SDK as the cluster admin."""
    with api.client() as client:
        yield client


@dataclass
class Account:
    """A user with an API key."""

    name: str
    id: str
    role: str
    tenant_id: str
    key: str
    key_id: str


@dataclass
class TenantWorld:
    id: str
    name: str
    accounts: dict[str, Account]

    def __getitem__(self, role: str) -> Account:
        return self.accounts[role]


def make_account(admin: CloudClient, tenant: str, role: str, prefix: str = "u") -> Account:
    user = admin.users.create(unique(f"{prefix}-{role}"), role, tenant=tenant)
    key = admin.keys.create(unique("key"), user=user["name"])
    return Account(name=user["name"], id=user["id"], role=role, tenant_id=user["tenant_id"], key=key["secret"],
                   key_id=key["id"])


def make_tenant(admin: CloudClient, prefix: str = "t") -> TenantWorld:
    """A fresh tenant with one admin, developer and viewer, each with an API key."""
    tenant = admin.tenants.create(unique(prefix))
    accounts = {role: make_account(admin, tenant["name"], role, prefix) for role in ("admin", "developer", "viewer")}
    return TenantWorld(id=tenant["id"], name=tenant["name"], accounts=accounts)


@pytest.fixture
def zone(admin: CloudClient) -> Iterator[str]:
    """A zone of its own; its hosts are disabled afterwards, so later tests never place anything on them."""
    name = unique("z")
    yield name
    for host in admin.hosts.list(limit=1000)["items"]:
        if host.get("zone") == name and host.get("enabled", True):
            admin.hosts.disable(host["id"])


@pytest.fixture
def tenant(admin: CloudClient) -> TenantWorld:
    """A fresh tenant for one test."""
    return make_tenant(admin)


class Ticker:
    """A monotonic clock for heartbeats that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- compute tests: an own server per test, so the hosts it joins are the only ones the scheduler sees and
# refusal messages ("no valid host among 1: memory 1") are exact; heartbeats run on the ``ticker`` clock
@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def capi(tmp_path: Path, ticker: Ticker) -> Iterator[ApiServer]:
    with serve_api(tmp_path) as server:
        server.rt.liveness = Liveness(clock=ticker)
        yield server


@pytest.fixture
def cadmin(capi: ApiServer) -> Iterator[CloudClient]:
    with capi.client() as client:
        yield client


@pytest.fixture
def team(cadmin: CloudClient) -> TenantWorld:
    return make_tenant(cadmin, "compute")


@pytest.fixture
def dev(capi: ApiServer, team: TenantWorld) -> Iterator[CloudClient]:
    """The team's developer on ``capi`` (network tests define their own ``dev`` on the shared server)."""
    with capi.client(api_key=team["developer"].key) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the documented error shape with this status (and code); returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["request_id"] == response.headers["X-Request-Id"], (error, response.headers)
    if code is not None:
        assert error["code"] == code, error
    return dict(error)
