"""``thecloud-storaged``: block volumes and the S3-compatible object store of one host."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shared import logs
from shared.hostidentity import IdentityError
from storaged.volume_cli import volume_config, volume_options


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="thecloud", prog_name="thecloud-storaged")
def cli() -> None:
    """thecloud storaged: this host's volumes and object store."""


@cli.command("run")
@click.option("--data-dir", required=True, envvar="THECLOUD_STORAGED_DATA_DIR", type=click.Path(path_type=Path))
@click.option("--s3", "s3_listen", default="127.0.0.1:8610", show_default=True, envvar="THECLOUD_STORAGED_S3",
              help="HOST:PORT the S3 API listens on (empty: no S3)")
@click.option("--local-auth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="THECLOUD_STORAGED_LOCAL_AUTH",
              help="JSON file of S3 credentials for a standalone storaged (no controller)")
@click.option("--s3-tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="serve S3 over HTTPS with this certificate chain (PEM)")
@click.option("--s3-tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--s3-region", default="us-east-1", show_default=True)
@click.option("--s3-max-buckets", type=int, default=100, show_default=True,
              help="buckets per tenant (local catalog only; the controller enforces its own quota)")
@click.option("--s3-endpoint", default="", help="the S3 URL to tell the controllers (default: from --s3)")
@volume_options
@click.option("--identity-dir", type=click.Path(file_okay=False, path_type=Path), envvar="THECLOUD_IDENTITY_DIR",
              help="host identity written by `thecloud-agent join`: S3 keys, buckets and volumes come from the "
                   "controllers")
@click.option("--controller", "controllers", multiple=True,
              help="controller agent endpoint HOST:PORT (repeatable; default: those learned at join)")
@click.option("--log-level", default="INFO")
def run(data_dir: Path, s3_listen: str, local_auth: Path | None, s3_tls_cert: Path | None, s3_tls_key: Path | None,
        s3_region: str, s3_max_buckets: int, s3_endpoint: str, volume_backend: str | None, volume_pool: Path | None,
        volume_group: str | None, thin_pool: str, spec_file: Path | None, identity_dir: Path | None,
        controllers: tuple[str, ...], log_level: str) -> None:
    """Run storaged in the foreground."""
    from storaged.daemon import StoragedConfig, serve

    logs.setup("storaged", log_level)
    if (s3_tls_cert is None) != (s3_tls_key is None):
        _fail("--s3-tls-cert and --s3-tls-key go together")
    config = StoragedConfig(data_dir=data_dir, s3_listen=s3_listen, local_auth=local_auth, tls_cert=s3_tls_cert,
                            tls_key=s3_tls_key, region=s3_region, max_buckets=s3_max_buckets,
                            volumes=volume_config(str(data_dir), volume_backend, volume_pool, volume_group, thin_pool,
                                                  spec_file),
                            identity_dir=identity_dir, controllers=controllers, s3_endpoint=s3_endpoint)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        serve(config)
    except (OSError, ValueError, IdentityError) as exc:
        _fail(str(exc))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
