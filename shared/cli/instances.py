"""`cloud instance ...`, `cloud server-group ...` and `cloud instance-type ...`."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option, tenant_option
from shared.cli.output import emit, emit_done, emit_page, print_object, print_table
from shared.cli.terminal import ESCAPE, bridge, stdin_is_terminal

COLUMNS = ("name", "id", "status", "kind", "image", "host", "vcpus", "memory_mb", "disk_gb", "created_at")
FIELDS = ("id", "name", "tenant_id", "kind", "image", "status", "status_reason", "desired", "generation", "host",
          "zone", "group", "instance_type", "vcpus", "memory_mb", "disk_gb", "restart_policy", "command", "env",
          "ports", "addresses", "tags", "metadata", "has_user_data", "created_by", "created_at", "updated_at")
CREATED_FIELDS = ("id", "name", "status", "status_reason", "host", "kind", "image", "vcpus", "memory_mb", "disk_gb")
GROUP_COLUMNS = ("name", "policy", "members", "created_at")
TYPE_COLUMNS = ("name", "vcpus", "memory_mb", "disk_gb")
STATUSES = ("pending", "scheduled", "creating", "running", "stopped", "error", "deleting")
PORT_RE = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

wait_option = click.option("--wait", is_flag=True, help="Wait until the instance gets there (or fails).")
timeout_option = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0,
                              show_default=True, help="Seconds --wait waits at most.")


def parse_env(values: Iterable[str]) -> dict[str, str]:
    """``K=V`` pairs (the value may contain ``=``; it may be empty)."""
    env: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not ENV_NAME_RE.match(name):
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


def parse_ports(values: Iterable[str]) -> list[dict[str, Any]]:
    """``HOST:CONTAINER`` or ``HOST:CONTAINER/udp`` mappings."""
    ports = []
    for item in values:
        match = PORT_RE.match(item.strip())
        if match is None or not all(1 <= int(match.group(i)) <= 65535 for i in (1, 2)):
            raise click.BadParameter(f"{item!r} is not HOST_PORT:CONTAINER_PORT[/tcp|/udp]", param_hint="--port")
        ports.append({"host_port": int(match.group(1)), "container_port": int(match.group(2)),
                      "protocol": match.group(3) or "tcp"})
    return ports


def _describe(instance: dict[str, Any]) -> str:
    reason = instance.get("status_reason") or ""
    return f"{instance.get('status')}: {reason}" if reason else str(instance.get("status"))


def wait_for(state: CliState, ident: str, statuses: Sequence[str], timeout: float,
             tenant: str | None) -> dict[str, Any]:
    """Polls with a rich status line (each change is also printed on stderr); raises on error or timeout."""
    err = Console(stderr=True, highlight=False, emoji=False)
    with err.status(f"Waiting for instance {ident} to be {' or '.join(statuses)}...") as status:
        def changed(instance: dict[str, Any]) -> None:
            text = _describe(instance)
            status.update(f"Instance {ident}: {text}")
            err.print(f"instance {ident}: {text}", markup=False)

        return state.client().instances.wait(ident, statuses, timeout, interval=0.5, tenant=tenant,
                                             on_change=changed)


@click.group(cls=CloudGroup)
def instance() -> None:
    """Instances (containers and VMs)."""


@instance.command("create")
@click.argument("name")
@click.option("--image", required=True, help="Image reference (e.g. docker.io/library/nginx:1.27).")
@click.option("--kind", type=click.Choice(["container", "vm"]), default="container", show_default=True)
@click.option("--type", "instance_type", help="Instance type (size); see `cloud instance-type list`.")
@click.option("--vcpus", type=click.IntRange(min=1), help="Virtual CPUs (overrides --type).")
@click.option("--memory", "memory_mb", type=click.IntRange(min=16), help="Memory in MB (overrides --type).")
@click.option("--disk", "disk_gb", type=click.IntRange(min=1), help="Disk in GB (overrides --type).")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--port", "ports", multiple=True, metavar="HOST:CONTAINER[/udp]",
              help="Publish a container port on the host (repeatable).")
@click.option("--user-data-file", type=click.File("r"), help="Cloud-init user data (VMs) from this file.")
@click.option("--restart", "restart_policy", type=click.Choice(["always", "on-failure", "never"]),
              help="Restart policy (default always).")
@click.option("--zone", help="Availability zone.")
@click.option("--group", help="Server group (affinity or anti-affinity).")
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--trait", "traits", multiple=True, help="A trait the host must have (repeatable).")
@click.option("--subnet", help="Subnet (name or id) of the instance's port (default: the default VPC's).")
@click.option("--security-group", "security_groups", multiple=True,
              help="Security group of the subnet's VPC (repeatable; default: the VPC's default group).")
@click.option("--volume", "volumes", multiple=True, metavar="VOLUME[:/MOUNT/PATH]",
              help="Attach a volume (containers: at the path; VMs: as the next disk); it runs on the volume's host.")
@click.option("--count", type=click.IntRange(1, 1000),
              help="Create this many, named NAME-1 .. NAME-N, placed together (all or none).")
@wait_option
@timeout_option
@tenant_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(state: CliState, name: str, image: str, kind: str, instance_type: str | None, vcpus: int | None,
           memory_mb: int | None, disk_gb: int | None, env: tuple[str, ...], ports: tuple[str, ...],
           user_data_file: Any, restart_policy: str | None, zone: str | None, group: str | None,
           tags: tuple[str, ...], traits: tuple[str, ...], subnet: str | None, security_groups: tuple[str, ...],
           volumes: tuple[str, ...], count: int | None, wait: bool,
           timeout: float,
           tenant: str | None, command: tuple[str, ...]) -> None:
    """Create an instance (or --count of them); the command to run (optional) goes after `--`.

    \b
    cloud instance create web --image nginx:1.27 --type small --port 8080:80 --wait
    cloud instance create job --image alpine --vcpus 1 --memory 256 --disk 1 -- sh -c 'echo hi'
    cloud instance create worker --image alpine --type tiny --count 20
    """
    if instance_type is None and None in (vcpus, memory_mb, disk_gb):
        raise click.UsageError("give --type, or all of --vcpus, --memory and --disk")
    fields: dict[str, Any] = {
        "kind": kind, "instance_type": instance_type, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb,
        "restart_policy": restart_policy, "zone": zone, "group": group,
        "command": list(command) or None, "env": parse_env(env) or None, "ports": parse_ports(ports) or None,
        "tags": list(tags) or None, "required_traits": list(traits) or None,
        "subnet": subnet, "security_groups": list(security_groups) or None,
        "user_data": user_data_file.read() if user_data_file is not None else None,
    }
    if volumes:
        if count is not None:
            raise click.UsageError("--volume attaches one volume to one instance: it does not go with --count")
        fields["volumes"] = [dict(zip(("volume", "mount_path"), v.split(":", 1), strict=False)) for v in volumes]
    client = state.client()
    if count is not None:
        batch = client.instances.create_batch(name, count, image, tenant=tenant, **fields)
        if wait:
            deadline = time.monotonic() + timeout
            batch = [wait_for(state, i["id"], ["running"], max(0.1, deadline - time.monotonic()), tenant)
                     for i in batch]
        emit_page(state.output, {"items": batch, "next_marker": None}, CREATED_FIELDS)
        return
    created = client.instances.create(name, image, tenant=tenant, **fields)
    if wait:
        created = wait_for(state, created["id"], ["running"], timeout, tenant)
    emit(state.output, created, fields=CREATED_FIELDS if state.output == "table" else None)


@instance.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only instances with this status.")
@click.option("--tag", help="Only instances with this tag.")
@list_options()
@click.pass_obj
def list_(state: CliState, list_args: ListArgs, status: str | None, tag: str | None) -> None:
    """List instances."""
    emit_page(state.output, list_args.fetch(state.client().instances, status=status, tag=tag), COLUMNS)


@instance.command("show")
@click.argument("ident", metavar="INSTANCE")
@stale_option
@tenant_option
@click.pass_obj
def show(state: CliState, ident: str, stale: bool, tenant: str | None) -> None:
    """Show an instance (by name or id) with its recent events."""
    result = state.client().instances.get(ident, stale=stale, tenant=tenant)
    if state.output != "table":
        emit(state.output, result)
        return
    print_object(result, FIELDS)
    events = result.get("events") or []
    if events:
        click.echo()
        print_table(events, ("time", "message"))


def _action(verb: str, target: str | None, help_text: str) -> None:
    @instance.command(verb, help=help_text)
    @click.argument("ident", metavar="INSTANCE")
    @tenant_option
    @click.pass_obj
    def command(state: CliState, ident: str, tenant: str | None, **kwargs: Any) -> None:
        result = getattr(state.client().instances, verb)(ident, tenant=tenant)
        if target is not None and kwargs.get("wait"):
            result = wait_for(state, ident, [target], kwargs["timeout"], tenant)
        emit_done(state.output, f"Instance {ident}: {verb} requested ({_describe(result)}).", result)

    if target is not None:
        wait_option(command)
        timeout_option(command)


_action("stop", "stopped", "Stop an instance (--wait: until it is stopped).")
_action("start", "running", "Start a stopped instance (--wait: until it runs).")
_action("reboot", None, "Reboot a running instance.")


@instance.command("resize")
@click.argument("ident", metavar="INSTANCE")
@click.option("--type", "instance_type", help="New instance type.")
@click.option("--vcpus", type=click.IntRange(1, 512))
@click.option("--memory", "memory_mb", type=click.IntRange(16), help="Memory in MB.")
@click.option("--disk", "disk_gb", type=click.IntRange(1), help="Disk in GB (only grows).")
@tenant_option
@click.pass_obj
def resize(state: CliState, ident: str, instance_type: str | None, vcpus: int | None, memory_mb: int | None,
           disk_gb: int | None, tenant: str | None) -> None:
    """Resize an instance in place (containers)."""
    if instance_type is None and vcpus is None and memory_mb is None and disk_gb is None:
        raise click.UsageError("give --type or at least one of --vcpus, --memory, --disk")
    result = state.client().instances.resize(ident, instance_type=instance_type, vcpus=vcpus, memory_mb=memory_mb,
                                             disk_gb=disk_gb, tenant=tenant)
    emit_done(state.output, f"Instance {ident}: resized ({_describe(result)}).", result)


@instance.command("delete")
@click.argument("ident", metavar="INSTANCE")
@wait_option
@timeout_option
@tenant_option
@click.pass_obj
def delete(state: CliState, ident: str, wait: bool, timeout: float, tenant: str | None) -> None:
    """Delete an instance (--wait: until its host removed it)."""
    state.client().instances.delete(ident, tenant=tenant)
    if wait:
        wait_for(state, ident, ["deleted"], timeout, tenant)
    emit_done(state.output, f"Deleted instance {ident}.", {"instance": ident, "deleted": True})


@instance.command("logs")
@click.argument("ident", metavar="INSTANCE")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", type=click.IntRange(0, 100_000), help="Only the last N lines.")
@tenant_option
@click.pass_obj
def logs(state: CliState, ident: str, follow: bool, tail: int | None, tenant: str | None) -> None:
    """Print an instance's output."""
    try:
        for chunk in state.client().instances.logs(ident, tail=tail, follow=follow, tenant=tenant):
            click.echo(chunk, nl=False)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


@instance.command("exec")
@click.argument("ident", metavar="INSTANCE")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", "exec_timeout", type=click.FloatRange(0, 300, min_open=True), default=30.0,
              show_default=True, help="Seconds the command may run.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin: a live session (no --timeout).")
@click.option("-t", "--tty", "use_tty", is_flag=True, help="Give the command a terminal (with -i: raw mode).")
@tenant_option
@click.pass_obj
@click.pass_context
def exec_(ctx: click.Context, state: CliState, ident: str, command: tuple[str, ...], exec_timeout: float,
          interactive: bool, use_tty: bool, tenant: str | None) -> None:
    """Run a command in a container: `cloud instance exec web -- ls /`. Exits with the command's exit code.

    \b
    With -i the command runs as a live session with your stdin attached (`cloud instance exec web -it -- sh`);
    add -t for a terminal: your terminal is then in raw mode until the command ends.
    """
    if interactive or use_tty:
        session = state.client().instances.exec_interactive(ident, list(command), tty=use_tty, tenant=tenant)
        code = bridge(session, forward_stdin=interactive, raw=use_tty)
        if code is None:
            click.echo("Error: the command's exit code is unknown", err=True)
        ctx.exit(1 if code is None else int(code))
    result = state.client().instances.exec(ident, list(command), timeout=exec_timeout, tenant=tenant)
    if state.output == "table":
        click.echo(result.get("output", ""), nl=False)
    else:
        emit(state.output, result)
    ctx.exit(int(result.get("exit_code") or 0))


@instance.command("stats")
@click.argument("ident", metavar="INSTANCE")
@tenant_option
@click.pass_obj
def stats(state: CliState, ident: str, tenant: str | None) -> None:
    """CPU and memory use of an instance right now."""
    emit(state.output, state.client().instances.stats(ident, tenant=tenant))


@instance.command("console")
@click.argument("ident", metavar="INSTANCE")
@click.option("--snapshot", is_flag=True, help="Only print the console output so far.")
@tenant_option
@click.pass_obj
def console(state: CliState, ident: str, snapshot: bool, tenant: str | None) -> None:
    """A VM's serial console, interactively: Ctrl-] leaves (--snapshot: print the output so far)."""
    if not snapshot:
        session = state.client().instances.console_interactive(ident, tenant=tenant)
        if stdin_is_terminal():
            click.echo(f"Connected to the console of {ident}; Ctrl-] leaves.", err=True)
        bridge(session, raw=True, escape=ESCAPE, eof_closes_input=False)
        return
    result = state.client().instances.console(ident, tenant=tenant)
    if state.output == "table" and isinstance(result.get("output"), str):
        click.echo(result["output"], nl=False)
    else:
        emit(state.output, result)


# -- server groups -----------------------------------------------------------------------------------
@click.group("server-group", cls=CloudGroup)
def server_group() -> None:
    """Server groups: affinity (same host) or anti-affinity (different hosts)."""


@server_group.command("create")
@click.argument("name")
@click.option("--policy", type=click.Choice(["affinity", "anti-affinity"]), required=True)
@tenant_option
@click.pass_obj
def group_create(state: CliState, name: str, policy: str, tenant: str | None) -> None:
    """Create a server group; put instances in it with `cloud instance create --group NAME`."""
    emit(state.output, state.client().server_groups.create(name, policy, tenant=tenant))


@server_group.command("list")
@list_options()
@click.pass_obj
def group_list(state: CliState, list_args: ListArgs) -> None:
    """List server groups."""
    emit_page(state.output, list_args.fetch(state.client().server_groups), GROUP_COLUMNS)


@server_group.command("delete")
@click.argument("name")
@tenant_option
@click.pass_obj
def group_delete(state: CliState, name: str, tenant: str | None) -> None:
    """Delete a server group without members."""
    state.client().server_groups.delete(name, tenant=tenant)
    emit_done(state.output, f"Deleted server group {name}.", {"server_group": name, "deleted": True})


# -- instance types ----------------------------------------------------------------------------------
@click.group("instance-type", cls=CloudGroup)
def instance_type() -> None:
    """Instance types (named sizes)."""


@instance_type.command("list")
@list_options(tenant_scoped=False)
@click.pass_obj
def type_list(state: CliState, list_args: ListArgs) -> None:
    """List instance types."""
    emit_page(state.output, list_args.fetch(state.client().instance_types), TYPE_COLUMNS)


@instance_type.command("create")
@click.argument("name")
@click.option("--vcpus", type=click.IntRange(1, 512), required=True)
@click.option("--memory", "memory_mb", type=click.IntRange(min=16), required=True, help="Memory in MB.")
@click.option("--disk", "disk_gb", type=click.IntRange(min=1), required=True, help="Disk in GB.")
@click.pass_obj
def type_create(state: CliState, name: str, vcpus: int, memory_mb: int, disk_gb: int) -> None:
    """Define an instance type (cluster admin)."""
    emit(state.output, state.client().instance_types.create(name, vcpus, memory_mb, disk_gb))


@instance_type.command("delete")
@click.argument("name")
@click.pass_obj
def type_delete(state: CliState, name: str) -> None:
    """Delete an instance type (cluster admin)."""
    state.client().instance_types.delete(name)
    emit_done(state.output, f"Deleted instance type {name}.", {"instance_type": name, "deleted": True})
