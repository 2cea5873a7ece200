"""Joining: one-time tokens, zeroconf discovery, mutual TLS that tells controllers and hosts apart."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controller.security.ca import load_ca, sign_host_csr
from shared import pki
from tests.compute.conftest import Cloud
from tests.harness.agents import REPO, AgentNode, wait_for
from tests.harness.controllers import ControllerCluster
from tests.harness.netns import Underlay

pytestmark = pytest.mark.slow


def _join(args: list[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agent.main", "join", *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_reused_expired_and_bogus_tokens_are_refused(cloud: Cloud, tmp_path: Path) -> None:
    url = cloud.cluster.wait_leader().url
    token = cloud.api.call("POST", "/v1/hosts/tokens", {"expires_in_seconds": 60}, ok=201)["token"]
    first = _join(["--controller", url, "--token", token, "--data-dir", str(tmp_path / "a"), "--name", "ja"])
    assert first.returncode == 0, first.stderr
    again = _join(["--controller", url, "--token", token, "--data-dir", str(tmp_path / "b"), "--name", "jb"])
    assert again.returncode == 2 and "already used" in again.stderr
    bogus = _join(["--controller", url, "--token", "tcj_0123456789abcdef_nope", "--data-dir",
                   str(tmp_path / "c"), "--name", "jc"])
    assert bogus.returncode == 2 and "not valid" in bogus.stderr
    assert not (tmp_path / "b" / "identity.json").exists() and not (tmp_path / "c" / "identity.json").exists()
    hosts = cloud.api.call("GET", "/v1/hosts", ok=200)["items"]
    assert [h["name"] for h in hosts] == ["ja"]
    key = (tmp_path / "a" / "host.key")
    assert key.stat().st_mode & 0o777 == 0o600


def test_agent_api_needs_a_host_certificate_and_agents_only_trust_controllers(cloud: Cloud, tmp_path: Path) -> None:
    agent = cloud.add_agent("tls1", driver="fake")
    controller = cloud.cluster.nodes[0]
    ident = agent.data_dir
    # no client certificate: the TLS handshake itself fails
    plain = ssl.create_default_context(cafile=str(ident / "ca.crt"))
    plain.check_hostname = False
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(f"https://{controller.agent_api}/agent/v1/heartbeat", content=b"\x80", verify=plain, timeout=5)
    # a host certificate cannot pose as a controller towards another agent (name check on the agent's side)
    as_host = ssl.create_default_context(cafile=str(ident / "ca.crt"))
    as_host.check_hostname = False
    as_host.load_cert_chain(str(ident / "host.crt"), str(ident / "host.key"))
    r = httpx.get(f"https://127.0.0.1:{agent.listen_port}/agent/v1/instances/x/stats", verify=as_host, timeout=5)
    assert r.status_code == 403
    # a certificate from another cluster's CA, for the very same host id, is refused in the handshake
    stranger = load_ca(b"another-cluster-secret-0123456789abcdef")
    key = pki.new_key()
    cert = sign_host_csr(stranger, pki.csr_pem(key, "x"), agent.host_id)
    (tmp_path / "s.crt").write_text(cert)
    (tmp_path / "s.key").write_bytes(pki.key_pem(key))
    foreign = ssl.create_default_context(cafile=str(ident / "ca.crt"))
    foreign.check_hostname = False
    foreign.load_cert_chain(str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(f"https://{controller.agent_api}/agent/v1/heartbeat", content=b"\x80", verify=foreign, timeout=5)
    # while the real host certificate gets through (and a garbage body is a clean 400)
    r = httpx.post(f"https://{controller.agent_api}/agent/v1/heartbeat", content=b"\xc1", verify=as_host, timeout=5)
    assert r.status_code == 400 and "msgpack" in r.json()["error"]["message"]


def test_join_finds_the_controller_with_zeroconf(tmp_path: Path) -> None:
    underlay = Underlay(250)
    underlay.create()
    cluster = ControllerCluster(tmp_path / "controllers", size=1)
    node = cluster.nodes[0]
    node.api_host = underlay.gateway  # plain HTTP off loopback: only for this test, hence --insecure-http
    node.extra_args = ["--zeroconf-address", underlay.gateway, "--insecure-http"]
    try:
        cluster.start()
        ns, address = underlay.add_host()
        cluster.wait_leader(30)
        key = node.admin_key_file
        wait_for(key.exists, 30, what="admin key")
        url = node.url
        token = httpx.post(url + "/v1/hosts/tokens", json={}, timeout=10,
                           headers={"Authorization": f"Bearer {key.read_text().strip()}"}).json()["token"]
        joined = _join(["--token", token, "--data-dir", str(tmp_path / "zc"), "--name", "zc1",
                        "--discover-interface", address], netns=ns)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        assert f"found a controller at {url}" in joined.stdout
    finally:
        cluster.stop()
        underlay.destroy()


__all__ = ["AgentNode"]
