"""Client configuration: profiles in a TOML file, overridden by THECLOUD_* environment variables.

The file (``~/.config/thecloud/config.toml``, or ``$THECLOUD_CONFIG``) looks like::

    current = "default"

    [profiles.default]
    url = "http://127.0.0.1:8600"
    api_key = "tck_..."

Precedence, highest first: explicit arguments, environment (``THECLOUD_URL``, ``THECLOUD_API_KEY``,
``THECLOUD_TOKEN``), the selected profile, the default URL. A credential from the environment replaces
both credentials of the profile. The profile is the ``profile`` argument, else ``THECLOUD_PROFILE``,
else ``current`` in the file, else ``default``.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_URL = "http://127.0.0.1:8600"
DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """The config file cannot be read or names a profile that does not exist."""


@dataclass(frozen=True)
class Settings:
    """Where and how to connect: the result of resolving profile, environment and arguments."""

    url: str
    api_key: str | None = None
    token: str | None = None
    profile: str = DEFAULT_PROFILE


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file's path: ``$THECLOUD_CONFIG`` or ``~/.config/thecloud/config.toml``."""
    env = os.environ if env is None else env
    override = env.get("THECLOUD_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".config" / "thecloud" / "config.toml"


def load_file(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or an empty config if it does not exist."""
    path = path or config_path()
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def save_file(data: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write the config atomically with mode 0600 (its directory is created with mode 0700)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            tomli_w.dump(dict(data), handle)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _profiles(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError("'profiles' in the config file must be a table")
    return profiles


def current_profile(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """The profile in use when none is named: ``THECLOUD_PROFILE``, ``current``, or ``default``."""
    env = os.environ if env is None else env
    return env.get("THECLOUD_PROFILE") or str(data.get("current") or DEFAULT_PROFILE)


def resolve(
    profile: str | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
    must_exist: bool = True,
) -> Settings:
    """Resolve the settings to connect with (see the module docstring for the precedence).

    A profile named explicitly must exist in the file unless ``must_exist`` is False.
    """
    env = os.environ if env is None else env
    data = load_file(path or config_path(env))
    profiles = _profiles(data)
    name = profile or current_profile(data, env)
    if profile and must_exist and profile not in profiles:
        raise ConfigError(f"no profile named {profile!r} in {path or config_path(env)}")
    section = profiles.get(name, {})
    resolved_url = url or env.get("THECLOUD_URL") or section.get("url") or DEFAULT_URL
    env_key, env_token = env.get("THECLOUD_API_KEY"), env.get("THECLOUD_TOKEN")
    if env_key or env_token:
        key, tok = env_key or None, env_token or None
    else:
        key, tok = section.get("api_key"), section.get("token")
    if api_key or token:
        key, tok = api_key, token
    return Settings(url=str(resolved_url), api_key=key, token=tok, profile=name)


def save_profile(
    name: str,
    url: str,
    *,
    api_key: str | None = None,
    token: str | None = None,
    make_current: bool = True,
    path: Path | None = None,
) -> Path:
    """Create or replace a profile (with at most one credential) and optionally make it current."""
    data = load_file(path)
    profiles = _profiles(data)
    entry: dict[str, Any] = {"url": url}
    if api_key:
        entry["api_key"] = api_key
    if token:
        entry["token"] = token
    profiles[name] = entry
    data["profiles"] = profiles
    if make_current:
        data["current"] = name
    return save_file(data, path)


def clear_credentials(name: str, path: Path | None = None) -> bool:
    """Remove the API key and token of a profile, keeping its URL; False if it had none."""
    data = load_file(path)
    profiles = _profiles(data)
    entry = profiles.get(name)
    if not entry or not ({"api_key", "token"} & entry.keys()):
        return False
    entry.pop("api_key", None)
    entry.pop("token", None)
    save_file(data, path)
    return True
