"""``thecloud-agent``: join (once per host) and run."""

from __future__ import annotations

import sys

import click

from agent.capacity import CapacityConfig
from agent.image_prune import DEFAULT_GRACE_SECONDS
from shared import logs
from shared.hostidentity import IdentityError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="thecloud", prog_name="thecloud-agent")
def cli() -> None:
    """thecloud agent: runs this host's instances for the controllers."""


@cli.command("join")
@click.option("--controller", "controller_url", envvar="THECLOUD_CONTROLLER",
              help="controller API URL (default: find one with zeroconf)")
@click.option("--token", required=True, envvar="THECLOUD_JOIN_TOKEN", help="one-time join token")
@click.option("--data-dir", required=True, envvar="THECLOUD_AGENT_DATA_DIR")
@click.option("--name", help="host name in the cluster (default: this machine's host name)")
@click.option("--zone", help="availability zone")
@click.option("--ca-file", help="CA bundle to verify the controller's HTTPS certificate")
@click.option("--discover-interface", "interfaces", multiple=True,
              help="interface address to search for controllers on (default: every non-loopback IPv4 address)")
def join_cmd(controller_url: str | None, token: str, data_dir: str, name: str | None, zone: str | None,
             ca_file: str | None, interfaces: tuple[str, ...]) -> None:
    """Register this host with a join token and store its identity in DATA_DIR."""
    from agent.join import join

    if not controller_url:
        from agent.discovery import discover

        controller_url = discover(interfaces=list(interfaces) or None)
        if controller_url is None:
            _fail("no controller found with zeroconf (_thecloud._tcp); give --controller URL")
            return
        click.echo(f"found a controller at {controller_url}")
    try:
        identity = join(controller_url, token, data_dir, name, zone, ca_file)
    except IdentityError as exc:
        _fail(str(exc))
        return
    click.echo(f"joined as host {identity.name} ({identity.host_id}); start it with "
               f"`thecloud-agent run --data-dir {data_dir}`")


def _parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            _fail(f"{what} must be KEY=VALUE, got {value!r}")
        out[key] = val
    return out


@cli.command("run")
@click.option("--data-dir", required=True, envvar="THECLOUD_AGENT_DATA_DIR")
@click.option("--driver", type=click.Choice(["docker", "libvirt", "fake"]), default="docker", show_default=True,
              envvar="THECLOUD_AGENT_DRIVER")
@click.option("--listen", default="127.0.0.1:8620", show_default=True, envvar="THECLOUD_AGENT_LISTEN",
              help="HOST:PORT of the agent's mutual-TLS listener (logs, exec, stats)")
@click.option("--advertise", default="", help="address controllers use to reach --listen (default: --listen)")
@click.option("--controller", "controllers", multiple=True, help="controller agent endpoint HOST:PORT (repeatable; "
              "default: those learned at join)")
@click.option("--heartbeat-interval", type=float, help="seconds (default: what the controllers ask for, 5)")
@click.option("--trait", "traits", multiple=True)
@click.option("--capacity", "totals", multiple=True, help="override a detected total, e.g. memory_mb=4096")
@click.option("--reserved-memory-mb", type=int, default=512, show_default=True)
@click.option("--cpu-allocation-ratio", type=float, default=4.0, show_default=True)
@click.option("--driver-option", "driver_options", multiple=True, help="KEY=VALUE passed to the driver")
@click.option("--image-cache-grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE_SECONDS,
              show_default=True, envvar="THECLOUD_AGENT_IMAGE_CACHE_GRACE",
              help="seconds a cached VM image no instance here uses any more is kept before it is removed")
@click.option("--log-level", default="INFO")
def run(data_dir: str, driver: str, listen: str, advertise: str, controllers: tuple[str, ...],
        heartbeat_interval: float | None, traits: tuple[str, ...], totals: tuple[str, ...], reserved_memory_mb: int,
        cpu_allocation_ratio: float, driver_options: tuple[str, ...], image_cache_grace: float,
        log_level: str) -> None:
    """Run the agent in the foreground."""
    from agent.daemon import AgentConfig, serve
    from shared import hostidentity as identity_mod

    logs.setup("agent", log_level)
    try:
        identity = identity_mod.load(data_dir)
    except IdentityError as exc:
        _fail(str(exc))
        return
    parsed_totals = _parse_pairs(totals, "--capacity")
    bad = [k for k, v in parsed_totals.items() if k not in ("vcpu", "memory_mb", "disk_gb") or not v.isdigit()]
    if bad:
        _fail(f"--capacity takes vcpu=N, memory_mb=N or disk_gb=N; bad: {', '.join(bad)}")
    config = AgentConfig(
        data_dir=data_dir, driver=driver, listen=listen, advertise=advertise, controllers=list(controllers),
        heartbeat_interval=heartbeat_interval, traits=list(traits),
        capacity=CapacityConfig(reserved_memory_mb=reserved_memory_mb, cpu_allocation_ratio=cpu_allocation_ratio,
                                totals={k: int(v) for k, v in parsed_totals.items()}),
        driver_options=_parse_pairs(driver_options, "--driver-option"), image_cache_grace=image_cache_grace)
    try:
        serve(config, identity)
    except OSError as exc:
        _fail(str(exc))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
