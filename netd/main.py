"""``thecloud-netd``: the host's network daemon (VPC bridges, tunnels, security groups, NAT, DNS)."""

from __future__ import annotations

import ipaddress
import sys

import click

from shared import logs


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="thecloud", prog_name="thecloud-netd")
def cli() -> None:
    """thecloud netd: applies this host's share of every VPC."""


@cli.command("run")
@click.option("--backend", type=click.Choice(["linuxbridge", "ovs"]), default="linuxbridge", show_default=True,
              envvar="THECLOUD_NETD_BACKEND")
@click.option("--vtep", required=True, envvar="THECLOUD_NETD_VTEP", help="this host's underlay (VXLAN) address")
@click.option("--public-interface", required=True, envvar="THECLOUD_NETD_PUBLIC_INTERFACE",
              help="interface for outbound NAT, elastic IPs (proxy ARP) and port mappings")
@click.option("--identity-dir", envvar="THECLOUD_AGENT_DATA_DIR",
              help="host identity written by `thecloud-agent join` (for --controller)")
@click.option("--controller", "controllers", multiple=True,
              help="controller agent endpoint HOST:PORT (repeatable; default: those learned at join)")
@click.option("--ovs-datapath", type=click.Choice(["netdev", "system"]), default="system", show_default=True,
              envvar="THECLOUD_NETD_OVS_DATAPATH", help="ovs backend: kernel (system) or userspace (netdev)")
@click.option("--ovsdb", envvar="THECLOUD_NETD_OVSDB", default="unix:/var/run/openvswitch/db.sock",
              show_default=True, help="ovs backend: the ovsdb-server endpoint")
@click.option("--spec-file", help="read the desired state from this JSON HostNetwork instead of the controllers")
@click.option("--run-dir", default="/run/thecloud-netd", show_default=True, help="status, DNS files, pid files")
@click.option("--netns-dir", default="/run/netns", show_default=True, help="where router namespaces are named")
@click.option("--resync-seconds", type=float, default=10.0, show_default=True)
@click.option("--log-level", default="INFO")
def run(backend: str, vtep: str, public_interface: str, identity_dir: str | None, controllers: tuple[str, ...],
        ovs_datapath: str, ovsdb: str, spec_file: str | None, run_dir: str, netns_dir: str, resync_seconds: float,
        log_level: str) -> None:
    """Run netd in the foreground."""
    from netd.backends import load_backend
    from netd.daemon import NetDaemon, serve
    from netd.plane import LinuxPlane
    from netd.sources import ControllerSource, DesiredSource, SpecFileSource

    logs.setup("netd", log_level)
    try:
        ipaddress.IPv4Address(vtep)
    except ValueError:
        _fail(f"--vtep must be an IPv4 address, got {vtep!r}")
    source: DesiredSource
    if spec_file:
        source = SpecFileSource(spec_file)
    else:
        if not identity_dir:
            _fail("give --spec-file, or --identity-dir of a joined host to follow the controllers")
            return
        from shared import hostidentity, pki
        from shared.hostlink import ControllerLink, LinkError

        try:
            identity = hostidentity.load(identity_dir)
            link = ControllerLink(list(controllers) or identity.controllers,
                                  pki.client_context(identity.cert_file, identity.key_file, identity.ca_file))
        except (hostidentity.IdentityError, LinkError, OSError) as exc:
            _fail(str(exc))
            return
        source = ControllerSource(link)
    try:
        chosen = load_backend(backend, ovs_datapath, ovsdb, netns_dir)
    except (ImportError, ValueError) as exc:
        _fail(f"backend {backend}: {exc}")
        return
    plane = LinuxPlane(run_dir, netns_dir, public_interface)
    serve(NetDaemon(source, chosen, plane, vtep, run_dir, resync_seconds))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
