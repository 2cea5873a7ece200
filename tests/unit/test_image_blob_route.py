"""The controllers' blob route on the agent listener: who may fetch, and where a controller without the blob
sends the caller (a 307 to a controller that holds it)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from controller.api import agent_app
from controller.api.appkeys import RUNTIME
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.store.memory import MemoryStore
from shared import pki
from shared.blobs import BlobDir

SELF = "127.0.0.1:9"


def runtime(tmp_path: Path) -> Runtime:
    rt = Runtime(MemoryStore(address=SELF), b"y" * 64)
    rt.images = BlobDir(str(tmp_path / "images"))
    with rt.view() as data:
        data.members["10.0.0.2:8700"] = {"agent_address": "10.0.0.2:8601"}
        data.members["10.0.0.3:8700"] = {"agent_address": "10.0.0.3:8601"}
    return rt


def request(rt: Runtime, sha: str, common_name: str | None) -> web.Request:
    app = web.Application()
    app[RUNTIME] = rt
    ssl_object = mock.Mock()
    ssl_object.getpeercert.return_value = {"subject": ((("commonName", common_name),),)} if common_name else None
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: ssl_object if name == "ssl_object" else default
    return make_mocked_request("GET", f"/agent/v1/images/{sha}", match_info={"sha256": sha}, app=app,
                               transport=transport)


def add_blob(rt: Runtime, sha: str, holders: list[str]) -> None:
    with rt.view() as data:
        data.image_blobs[sha] = {"sha256": sha, "size": 1, "holders": holders, "created_at": 0.0}


async def test_a_controller_without_the_blob_redirects_to_a_holder(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    sha = hashlib.sha256(b"x").hexdigest()
    add_blob(rt, sha, [SELF, "10.0.0.2:8700", "10.0.0.3:8700"])  # claimed here, but the file is missing
    with pytest.raises(web.HTTPTemporaryRedirect) as exc:
        await agent_app.image_blob(request(rt, sha, pki.host_cn("h1")))
    assert exc.value.location == f"https://10.0.0.2:8601/agent/v1/images/{sha}"
    assert exc.value.headers["X-Holders"] == "10.0.0.2:8601,10.0.0.3:8601"
    add_blob(rt, sha, [SELF])
    with pytest.raises(ServiceError) as err:
        await agent_app.image_blob(request(rt, sha, pki.CONTROLLER_CN))
    assert err.value.status == 404


async def test_a_held_blob_is_streamed_to_hosts_and_controllers_only(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    assert rt.images is not None

    async def body() -> Any:
        yield b"blob bytes"

    sha, _ = await rt.images.write(body())
    for name in (pki.host_cn("h1"), pki.CONTROLLER_CN):
        response = await agent_app.image_blob(request(rt, sha, name))
        assert isinstance(response, web.FileResponse) and response.headers["X-Sha256"] == sha
    for name in (None, "someone-else"):
        with pytest.raises(ServiceError) as err:
            await agent_app.image_blob(request(rt, sha, name))
        assert err.value.status == 403
    with pytest.raises(ServiceError) as err:
        await agent_app.image_blob(request(rt, "not-a-sha", pki.CONTROLLER_CN))
    assert err.value.status == 400
