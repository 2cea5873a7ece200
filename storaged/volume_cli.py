"""The volume options of ``thecloud-storaged run`` and the wiring from them to a running VolumeService.

Kept apart from storaged/main.py so the S3 half and the volume half of the daemon each own their options:
``run`` takes ``@volume_options`` and hands the values to ``volume_config`` and ``run_volumes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from storaged.backends import BACKENDS
from storaged.desired_source import ControllerSource, DesiredSource, SpecFileSource
from storaged.volume_service import VolumeConfig, VolumeService, build_backend

F = TypeVar("F", bound=Callable[..., Any])


def volume_options(fn: F) -> F:
    """``--backend``, ``--pool``, ``--volume-group``, ``--thin-pool`` and ``--spec-file``."""
    options = [
        click.option("--backend", "volume_backend", type=click.Choice(BACKENDS), default=None,
                     envvar="THECLOUD_STORAGED_BACKEND",
                     help="volume backend (default: none, this host serves no volumes)"),
        click.option("--pool", "volume_pool", type=click.Path(file_okay=False, path_type=Path),
                     envvar="THECLOUD_STORAGED_POOL", help="btrfs: its mount point; file: the pool directory"),
        click.option("--volume-group", envvar="THECLOUD_STORAGED_VG", help="lvm: the volume group"),
        click.option("--thin-pool", default="tc-pool", show_default=True, help="lvm: the thin pool's LV name"),
        click.option("--spec-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="desired volumes as JSON (re-read on change; report in DATA_DIR/report.json) instead "
                          "of the controllers"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def volume_config(data_dir: str, volume_backend: str | None, volume_pool: Path | None, volume_group: str | None,
                  thin_pool: str, spec_file: Path | None) -> VolumeConfig | None:
    """The volume configuration, or None when no backend is configured."""
    if volume_backend is None:
        if spec_file is not None:
            raise click.UsageError("--spec-file needs --backend")
        return None
    if volume_backend in ("btrfs", "file") and volume_pool is None:
        raise click.UsageError(f"--backend {volume_backend} needs --pool PATH")
    if volume_backend == "lvm" and not volume_group:
        raise click.UsageError("--backend lvm needs --volume-group VG")
    return VolumeConfig(data_dir=Path(data_dir), backend=volume_backend, pool=volume_pool, volume_group=volume_group,
                        thin_pool=thin_pool, spec_file=spec_file)


def make_source(config: VolumeConfig, link: Any = None, extra_report: dict[str, Any] | None = None) -> DesiredSource:
    """The spec file when one is given, else the controllers over ``link`` (a shared.hostlink.ControllerLink)."""
    if config.spec_file is not None:
        return SpecFileSource(config.spec_file, config.data_dir)
    if link is None:
        raise ValueError("no desired-state source: give --spec-file or a host identity")
    return ControllerSource(link, extra_report)


async def run_volumes(config: VolumeConfig, stop: asyncio.Event, link: Any = None,
                      extra_report: dict[str, Any] | None = None) -> None:
    """Runs the volume service until ``stop`` is set."""
    service = VolumeService(build_backend(config), make_source(config, link, extra_report),
                            scratch_dir=config.data_dir / "transfers")
    await service.run(stop)
