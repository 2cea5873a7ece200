"""Compute drivers, one per file; ``load_driver`` picks one by name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from agent.drivers.base import Driver, DriverError

# name -> (module, class). Imported only when asked for, so that a host without libvirt-python (or without
# docker) can still run the drivers it has.
_DRIVERS: dict[str, tuple[str, str]] = {
    "fake": ("agent.drivers.fake", "FakeDriver"),
    "docker": ("agent.drivers.docker", "DockerDriver"),
    "libvirt": ("agent.drivers.libvirt", "LibvirtDriver"),
}

DRIVER_NAMES: tuple[str, ...] = tuple(_DRIVERS)


def load_driver(name: str, host_id: str, data_dir: str, options: Mapping[str, str] | None = None) -> Driver:
    """Imports the driver called ``name`` and returns a new instance of it for this host."""
    try:
        module_name, class_name = _DRIVERS[name]
    except KeyError:
        raise DriverError(f"unknown compute driver {name!r}; known: {', '.join(DRIVER_NAMES)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise DriverError(f"compute driver {name!r} cannot be loaded: {e}") from e
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise DriverError(f"{module_name}.{class_name} is not a compute driver")
    return cls(host_id, data_dir, options)


__all__ = ["DRIVER_NAMES", "load_driver"]
