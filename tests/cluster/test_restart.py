"""A one-node cluster brings back all of its state after SIGTERM and after kill -9."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from shared.sdk import CloudClient, CloudError
from tests.cluster.helpers import health, log_tails, report, wait_exit, wait_for
from tests.harness.controllers import ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow


def _state(client: CloudClient) -> dict[str, Any]:
    """Everything the test wrote, as seen through the API (linearizable reads)."""
    return {
        "tenants": sorted((t["id"], t["name"], t["description"]) for t in client.tenants.list_all()),
        "users": sorted((u["id"], u["name"], u["tenant_id"], u["role"], u["disabled"])
                        for u in client.users.list_all(all_tenants=True)),
        "secrets": {t: sorted((s["name"], s["version"]) for s in client.secrets.list_all(tenant=t))
                    for t in ("default", "acme", "globex")},
        "values": {f"{t}/{n}": client.secrets.get_value(n, tenant=t)["value"]
                   for t, n in (("acme", "db-password"), ("acme", "rotated"), ("globex", "api-token"))},
        "quota": client.tenants.get_quota("acme")["limits"],
        "audit": [(r["id"], r["action"], r["target"], r["outcome"])
                  for r in client.audit.list_all(all_tenants=True, limit=1000)],
    }


def _wait_up(cluster: ControllerCluster, node: ControllerNode) -> None:
    cluster.wait_leader(timeout=20)

    def serves() -> bool:
        with node.client(retries_on_503=0) as c:
            return c.auth.whoami()["user"]["name"] == "admin"

    wait_for(f"{node.name} to serve authenticated reads", serves, 10, [node])


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_one_node_restart_keeps_all_state(one_node: ControllerCluster, how: str) -> None:
    node = one_node.nodes[0]
    with node.client() as c:
        c.tenants.create("acme", "first customer")
        c.tenants.create("globex", "second customer")
        c.tenants.set_quota("acme", {"secrets": 7})
        c.users.create("alice", "developer", password="alice-password-1", tenant="acme")
        c.users.create("bob", "viewer", password="bob-password-22", tenant="globex")
        c.users.update("bob", disabled=True, tenant="globex")
        c.secrets.create("db-password", "s3cr3t", tenant="acme")
        c.secrets.create("rotated", "v1", tenant="acme")
        c.secrets.rotate("rotated", "v2", tenant="acme")
        c.secrets.create("api-token", "tok-123", tenant="globex")
        c.secrets.create("to-delete", "x")
        c.secrets.delete("to-delete")
        before = _state(c)
    with CloudClient(node.url) as alice:
        alice.auth.login("alice", "alice-password-1")
        alice_key = alice.keys.create("alice-key")
        alice_key_id = alice_key["id"]
    assert len(before["audit"]) >= 12, before["audit"]
    assert {"secret.create", "secret.rotate", "secret.delete"} <= {a[1] for a in before["audit"]}

    t0 = time.monotonic()
    if how == "sigterm":
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        code = wait_exit(node, 8)
        report("SIGTERM -> exit", f"{time.monotonic() - t0:.2f}s")
        assert code == 0, f"SIGTERM exit code {code}\n{log_tails([node])}"
        assert "controller stopped" in node.log_text()
    else:
        node.kill()
        assert node.proc is not None and node.proc.returncode == -9
    node.start()
    _wait_up(one_node, node)
    report(f"one-node restart after {how}", f"{time.monotonic() - t0:.2f}s until it serves again")

    with node.client() as c:
        after = _state(c)
        # The audit trail kept every record; writes after the restart continue it.
        assert after["audit"][: len(before["audit"])] == before["audit"]
        assert after == {**before, "audit": after["audit"]}
        c.secrets.create("after-restart", "ok", tenant="acme")
        audit = c.audit.list_all(all_tenants=True, limit=1000)
        assert audit[-1]["action"] == "secret.create" and audit[-1]["target"] == "after-restart"
        assert audit[-1]["id"] > before["audit"][-1][0]
        assert c.keys.get(alice_key_id, tenant="acme")["revoked"] is False
    # Passwords, a created API key and the disabled flag survived too.
    with CloudClient(node.url, api_key=alice_key["secret"]) as alice:
        assert alice.auth.whoami()["user"]["name"] == "alice"
        assert alice.secrets.get_value("db-password")["value"] == "s3cr3t"
    with CloudClient(node.url) as bob, pytest.raises(CloudError) as refused:
        bob.auth.login("bob", "bob-password-22")
    assert refused.value.status in (401, 403), refused.value
    wait_for("the node to lead and to have applied all it committed",
             lambda: (lambda h: h["role"] == "leader" and h["applied_index"] == h["commit_index"])(health(node)),
             5, [node])

