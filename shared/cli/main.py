"""The ``cloud`` command: a thin layer over the SDK in ``shared.sdk``."""

from __future__ import annotations

from typing import Any

import click

from shared.cli import (
    audit,
    auth,
    backups,
    cluster,
    hosts,
    images,
    instances,
    keys,
    networks,
    ports,
    quota,
    s3,
    secrets,
    tenants,
    users,
    volumes,
)
from shared.cli.common import CliState, CloudGroup, output_param
from shared.sdk.config import ConfigError
from shared.sdk.errors import CloudError


def report(error: CloudError | ConfigError) -> None:
    """Print an error (never a traceback) to stderr."""
    click.echo(f"Error: {error}", err=True)
    if isinstance(error, CloudError) and error.status == 401:
        click.echo("Hint: run `cloud login` (or set THECLOUD_API_KEY).", err=True)


class RootGroup(CloudGroup):
    """The root group: turns API, connection and config errors into a message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CloudError, ConfigError) as error:
            report(error)
            ctx.exit(1)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", envvar="THECLOUD_PROFILE", help="Config profile to use.")
@click.option("--url", help="Controller URL (overrides THECLOUD_URL and the profile).")
@click.pass_context
def cli(ctx: click.Context, profile: str | None, url: str | None) -> None:
    """Manage thecloud: `cloud <resource> <action>`."""
    state = ctx.ensure_object(CliState)
    state.profile = profile or state.profile
    state.url = url or state.url
    ctx.call_on_close(state.close)


cli.params.insert(0, output_param())

for command in (
    auth.login,
    auth.logout,
    auth.whoami,
    tenants.tenant,
    users.user,
    users.role,
    keys.key,
    quota.quota,
    secrets.secret,
    audit.audit,
    audit.events,
    cluster.cluster,
    hosts.host,
    instances.instance,
    instances.server_group,
    instances.instance_type,
    images.image,
    networks.vpc,
    networks.subnet,
    networks.sg,
    networks.eip,
    networks.peering,
    ports.port,
    volumes.volume,
    volumes.snapshot,
    backups.backup,
    s3.s3,
    s3.bucket,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cloud")


if __name__ == "__main__":
    main()
