"""Crash safety: storaged killed with SIGKILL in the middle of a 200 MiB upload leaves no partial object."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.s3.harness import TENANT_A, StoragedProcess

MIB = 1 << 20
TOTAL = 200 * MIB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StoragedProcess]:
    proc = StoragedProcess(tmp_path / "tc-s3-crash")
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.mark.slow
def test_kill_9_mid_upload_leaves_old_object(server: StoragedProcess) -> None:
    client = server.client(TENANT_A)
    client.create_bucket(Bucket="tc-crash")
    client.put_object(Bucket="tc-crash", Key="big", Body=b"the old object")
    url = client.generate_presigned_url("put_object", Params={"Bucket": "tc-crash", "Key": "big"}, ExpiresIn=600)
    temp_dir = server.data_dir / "s3" / "tmp"
    seen_temp: list[int] = []

    def body() -> Iterator[bytes]:
        chunk = os.urandom(MIB)
        for i in range(TOTAL // MIB):
            if i == 120:  # the server has stored ~100 MiB: the upload is well under way
                seen_temp.extend(p.stat().st_size for p in temp_dir.iterdir())
                assert server.proc is not None
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait(10)
            yield chunk

    with pytest.raises(httpx.HTTPError), server.http() as http:
        http.put(url, content=body(), headers={"Content-Length": str(TOTAL)})
    assert seen_temp and max(seen_temp) > 50 * MIB, "the kill did not happen mid-upload"
    assert any(temp_dir.iterdir()), "the killed upload left no temp file behind (nothing to clean up?)"

    server.start()
    assert list(temp_dir.iterdir()) == []  # stale temp files are removed at start
    got = client.get_object(Bucket="tc-crash", Key="big")
    assert got["Body"].read() == b"the old object"
    assert [o["Key"] for o in client.list_objects_v2(Bucket="tc-crash")["Contents"]] == ["big"]
    data_files = list((server.data_dir / "s3" / "data" / "tc-crash").iterdir())
    assert len(data_files) == 1 and data_files[0].stat().st_size == len(b"the old object")


@pytest.mark.slow
def test_sigterm_is_graceful_and_data_survives_restart(server: StoragedProcess) -> None:
    client = server.client(TENANT_A)
    client.create_bucket(Bucket="tc-restart")
    client.put_object(Bucket="tc-restart", Key="k", Body=b"durable")
    assert server.stop() == 0
    server.start()
    client = server.client(TENANT_A)
    assert client.get_object(Bucket="tc-restart", Key="k")["Body"].read() == b"durable"
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["tc-restart"]
