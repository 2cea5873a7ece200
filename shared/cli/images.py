"""`cloud image ...`: VM images (cluster-wide; the cluster admin imports and deletes them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from shared.cli.common import CliState, CloudGroup, ListArgs, list_options, stale_option
from shared.cli.output import emit, emit_done, emit_page

COLUMNS = ("name", "format", "size", "kernel", "instances", "holders", "created_at")
FIELDS = ("name", "format", "size", "disk", "kernel", "initrd", "cmdline", "source", "holders", "instances",
          "created_by", "created_at")
FORMATS = ("qcow2", "raw")


def row(image: dict[str, Any]) -> dict[str, Any]:
    """An image as a table row: direct kernel boot or not, how many controllers hold it."""
    out = dict(image)
    out["kernel"] = "yes" if image.get("kernel") else "-"
    out["holders"] = len(image.get("holders") or [])
    return out


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr (hashing and uploading each file); a no-op callback when disabled."""
    if not enabled:
        yield None
        return
    console = Console(stderr=True, highlight=False, emoji=False)
    columns = (TextColumn("{task.description:<14}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(done: int, total: int, what: str) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield update


@click.group(cls=CloudGroup)
def image() -> None:
    """VM images (every tenant sees them; the cluster admin imports and deletes them)."""


@image.command("import")
@click.argument("name")
@click.option("--file", "disk", type=click.Path(exists=True, dir_okay=False), help="Disk image to upload.")
@click.option("--url", help="Let the controller download the disk image from this URL instead.")
@click.option("--sha256", help="Expected sha256 of the --url download (recommended).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="qcow2", show_default=True,
              help="Disk image format.")
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False), help="Kernel for direct kernel boot.")
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False), help="Initrd (needs --kernel).")
@click.option("--cmdline", help="Kernel command line (needs --kernel).")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@click.pass_obj
def import_(state: CliState, name: str, disk: str | None, url: str | None, sha256: str | None, fmt: str,
            kernel: str | None, initrd: str | None, cmdline: str | None, no_progress: bool) -> None:
    """Register image NAME from a local disk file (--file, uploaded) or a URL (--url, downloaded by the
    controller). Blobs are verified by sha256 and stored once; each host fetches them once."""
    if (disk is None) == (url is None):
        raise click.UsageError("give either --file or --url")
    if url is not None and (kernel or initrd or cmdline):
        raise click.UsageError("--kernel, --initrd and --cmdline go with --file")
    if sha256 is not None and url is None:
        raise click.UsageError("--sha256 goes with --url")
    if (initrd or cmdline) and not kernel:
        raise click.UsageError("--initrd and --cmdline need --kernel")
    client = state.client()
    if url is not None:
        err = Console(stderr=True, highlight=False, emoji=False)
        with err.status(f"The controller is downloading {url}..."):
            created = client.images.import_url(name, url, sha256=sha256, format=fmt)
    else:
        assert disk is not None
        with _progress_bar(not no_progress and state.output == "table") as progress:
            created = client.images.import_file(name, disk, format=fmt, kernel=kernel, initrd=initrd,
                                                cmdline=cmdline, progress=progress)
    emit(state.output, created, fields=FIELDS)


@image.command("list")
@list_options(tenant_scoped=False)
@click.pass_obj
def list_(state: CliState, list_args: ListArgs) -> None:
    """List images."""
    page = list_args.fetch(state.client().images)
    if state.output == "table":
        page = {**page, "items": [row(i) for i in page.get("items") or []]}
    emit_page(state.output, page, COLUMNS)


@image.command("show")
@click.argument("name")
@stale_option
@click.pass_obj
def show(state: CliState, name: str, stale: bool) -> None:
    """Show an image: its blobs, the controllers holding it and how many VMs use it."""
    emit(state.output, state.client().images.get(name, stale=stale), fields=FIELDS)


@image.command("delete")
@click.argument("name")
@click.pass_obj
def delete(state: CliState, name: str) -> None:
    """Delete an image no instance uses."""
    state.client().images.delete(name)
    emit_done(state.output, f"Deleted image {name}.", {"image": name, "deleted": True})
