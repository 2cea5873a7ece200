"""Interactive sessions over WebSockets with real processes: the SDK and the CLI -> controller -> agent (mutual
TLS) -> docker exec on a hijacked connection, and back; and a VM's serial console (libvirt, the tiny test guest)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from shared.sdk import CloudClient, CloudError
from tests.compute.conftest import DOCKER_IMAGE, Cloud
from tests.compute.test_vm import (  # guest and vm_agent: fixtures (the tiny guest, a libvirt agent)
    BOOT_TIMEOUT,
    USER_DATA,
    cli,
    create_vm,
    guest,  # noqa: F401
    vm_agent,  # noqa: F401
)
from tests.harness.agents import REPO, AgentNode
from tests.harness.guest import BEGIN_MARKER, END_MARKER, READY_MARKER, Guest

pytestmark = pytest.mark.slow


def test_exec_sessions_through_the_api_and_the_cli(cloud: Cloud) -> None:
    cloud.add_agent("ws1")
    leader = cloud.cluster.wait_leader()
    admin_key = leader.admin_key_file.read_text().strip()
    cloud.api.call("POST", "/v1/instances", {"name": "shell", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                            "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("shell", "running")

    with CloudClient(leader.url, api_key=admin_key) as client:
        started = time.monotonic()
        with client.instances.exec_interactive("shell", ["sh"]) as session:
            session.send(b"echo $((6*7))\nexit 3\n")
            output = session.read_all(timeout=15)
        took = time.monotonic() - started
        assert output == b"42\n" and session.exit_code == 3, (output, session.exit_code)
        print(f"exec session (sh, two commands) took {took * 1000:.0f} ms")

        # with a tty: the command has a terminal, and an interactive shell echoes and prompts
        with client.instances.exec_interactive("shell", ["sh", "-c", "tty; exec sh"], tty=True) as session:
            session.resize(40, 120)
            session.send(b"stty size; exit 4\r")
            output = session.read_all(timeout=15)
        assert b"/dev/pts/" in output and b"40 120" in output and session.exit_code == 4, output

        # stdin's end reaches the command; stderr comes too
        with client.instances.exec_interactive("shell", ["sh", "-c", "cat; echo done >&2"]) as session:
            session.send(b"from stdin\n")
            session.close_stdin()
            assert (session.read_all(timeout=15), session.exit_code) == (b"from stdin\ndone\n", 0)

        # closing the session kills the command
        session = client.instances.exec_interactive("shell", ["sleep", "1000"])
        time.sleep(0.5)
        session.close()
        ps = client.instances.exec("shell", ["ps"])["output"]
        deadline = time.monotonic() + 10
        while "sleep 1000" in ps and time.monotonic() < deadline:
            time.sleep(0.2)
            ps = client.instances.exec("shell", ["ps"])["output"]
        assert "sleep 1000" not in ps, ps

        # a viewer may not
        client.users.create("watcher", "viewer")
        viewer_key = client.keys.create("watcher-key", user="watcher")["secret"]
    with CloudClient(leader.url, api_key=viewer_key) as viewer, pytest.raises(CloudError) as exc:
        viewer.instances.exec_interactive("shell", ["sh"])
    assert (exc.value.status, exc.value.code) == (403, "forbidden")
    records = cloud.api.call("GET", "/v1/audit?action=instance.exec&limit=1000")["items"]
    assert [(r["outcome"], r["status"]) for r in records].count(("success", 200)) == 4
    assert ("denied", 403) in [(r["outcome"], r["status"]) for r in records]

    # the CLI bridges stdin (a pipe here) and exits with the command's exit code
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("THECLOUD_")},
           "THECLOUD_URL": leader.url, "THECLOUD_API_KEY": admin_key, "THECLOUD_CONFIG": "/nonexistent/thecloud.toml"}
    out = subprocess.run([sys.executable, "-m", "shared.cli.main", "instance", "exec", "shell", "-i", "--", "sh"],
                         cwd=REPO, env=env, input="echo $((6*7))\necho to-stderr >&2\nexit 3\n", text=True,
                         capture_output=True, timeout=60)
    assert out.returncode == 3, out.stdout + out.stderr
    assert sorted(out.stdout.splitlines()) == ["42", "to-stderr"], out  # two pipes: either may come first
    # a command that reads until the end of its input
    out = subprocess.run([sys.executable, "-m", "shared.cli.main", "instance", "exec", "shell", "-i", "--", "wc", "-l"],
                         cwd=REPO, env=env, input="a\nb\nc\n", text=True, capture_output=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "3"), out


def test_vm_serial_console_over_the_websocket(cloud: Cloud, vm_agent: AgentNode,  # noqa: F811
                                              guest: Guest) -> None:  # noqa: F811
    imported = cli(cloud, "image", "import", "tiny-guest", "--file", str(guest.base_image), "--kernel",
                   str(guest.kernel), "--initrd", str(guest.initrd), "--cmdline", guest.cmdline)
    assert imported.returncode == 0, imported.stderr
    create_vm(cloud, "con1", "tiny-guest")
    cloud.api.wait_status("con1", "running", BOOT_TIMEOUT)
    leader = cloud.cluster.wait_leader()
    with CloudClient(leader.url, api_key=leader.admin_key_file.read_text().strip()) as client:
        # the session starts with what the console printed before (so the boot is there, however late we come)
        with client.instances.console_interactive("con1") as console:
            text = b""
            deadline = time.monotonic() + BOOT_TIMEOUT
            while READY_MARKER.encode() not in text and time.monotonic() < deadline:
                text += console.recv(timeout=BOOT_TIMEOUT) or b""
            decoded = text.decode(errors="replace").replace("\r\n", "\n")
            assert READY_MARKER in decoded, decoded[-2000:]
            between = decoded.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
            assert USER_DATA.format(token="con1").strip() in between, decoded[-2000:]
            # keystrokes reach the guest: its console echoes them
            console.send(b"typed-over-the-websocket\r")
            while b"typed-over-the-websocket" not in text and time.monotonic() < deadline:
                text += console.recv(timeout=10) or b""
            assert b"typed-over-the-websocket" in text
            with pytest.raises(CloudError) as exc:  # one session per console at a time
                client.instances.console_interactive("con1")
            assert exc.value.status == 422 and "in use" in exc.value.message
        # stopping the VM ends a session: the last frame says so
        console = client.instances.console_interactive("con1")
        client.instances.stop("con1")
        console.read_all(timeout=60)
        assert console.ended and console.exit_code is None
        console.close()
        cloud.api.call("DELETE", "/v1/instances/con1", ok=204)
