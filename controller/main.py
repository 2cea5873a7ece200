"""``thecloud-controller``: gen-secret, run, restore."""

from __future__ import annotations

import sys
from typing import Any

import click

from controller import config as config_mod
from controller import datadir
from controller.security import cluster_secret
from controller.store.snapshot_file import SnapshotError, decode_backup
from shared import logs


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="thecloud", prog_name="thecloud-controller")
def cli() -> None:
    """thecloud controller: Raft-replicated desired state and the public API."""


@cli.command("gen-secret")
@click.argument("file", type=click.Path(dir_okay=False))
def gen_secret(file: str) -> None:
    """Write a new cluster secret to FILE (mode 0600). Every controller of a cluster shares it."""
    try:
        cluster_secret.generate(file)
    except FileExistsError:
        _fail(f"{file} already exists; refusing to overwrite a cluster secret")
    except OSError as exc:
        _fail(f"cannot write {file}: {exc.strerror}")
    click.echo(f"wrote cluster secret to {file}")


@cli.command("run")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file")
@click.option("--data-dir")
@click.option("--api", help="HOST:PORT for the REST API")
@click.option("--raft", help="HOST:PORT for Raft traffic")
@click.option("--peer", "peers", multiple=True, help="another member's Raft HOST:PORT (repeatable)")
@click.option("--cluster-secret-file")
@click.option("--admin-key-file")
@click.option("--agent-api", help="HOST:PORT of the mutual-TLS listener for agents (default: API port + 1)")
@click.option("--zeroconf-address", help="announce the API with zeroconf (_thecloud._tcp) on this interface address")
@click.option("--host-grace", type=float, help="seconds without heartbeat before a host is down (15)")
@click.option("--heartbeat-interval", type=float, help="seconds between agent heartbeats (5)")
@click.option("--public-pool", help="IPv4 network elastic IPs are allocated from (198.18.200.0/24)")
@click.option("--tls-cert")
@click.option("--tls-key")
@click.option("--insecure-http", is_flag=True, default=None, help="allow plain HTTP on a non-loopback address")
@click.option("--log-level")
def run(config_file: str | None, **flags: Any) -> None:
    """Run a controller in the foreground."""
    if flags.get("peers") == ():
        flags.pop("peers")
    try:
        cfg = config_mod.load(flags, config_file)
    except config_mod.ConfigError as exc:
        _fail(str(exc))
        return
    logs.setup("controller", cfg.log_level)
    from controller.daemon import serve

    try:
        serve(cfg)
    except (datadir.DataDirError, cluster_secret.ClusterSecretError, OSError) as exc:
        _fail(str(exc))


@cli.command("restore")
@click.option("--from", "source", required=True, type=click.Path(exists=True, dir_okay=False),
              help="a file written by `cloud cluster backup`")
@click.option("--data-dir", required=True, help="an empty directory for the new cluster's first controller")
def restore(source: str, data_dir: str) -> None:
    """Prepare DATA_DIR to start a new one-node cluster holding the backup's state.

    Start it with `thecloud-controller run --data-dir DIR ...` using the same cluster secret as the
    backed-up cluster (secret values are encrypted with it), then grow it with `cloud cluster member add`.
    """
    with open(source, "rb") as f:
        blob = f.read()
    try:
        meta, _ = decode_backup(blob)
        datadir.stage_restore(data_dir, blob)
    except (SnapshotError, datadir.DataDirError) as exc:
        _fail(str(exc))
        return
    click.echo(f"staged backup of revision {meta.get('revision')} in {data_dir}; start the controller on it")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
