"""Controller settings: command-line flags over THECLOUD_* environment variables over a TOML file."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass
class ControllerConfig:
    data_dir: str = "./.thecloud/controller"
    api: str = "127.0.0.1:8600"
    raft: str = "127.0.0.1:8700"
    peers: list[str] = field(default_factory=list)
    cluster_secret_file: str = "./.thecloud/cluster.secret"  # noqa: S105 - a path, not a secret
    admin_key_file: str = "./.thecloud/admin.key"
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_http: bool = False
    log_level: str = "INFO"
    commit_timeout: float = 3.0
    # mutual-TLS listener for agents; "" means the API's host with the API port + 1
    agent_api: str = ""
    host_grace: float = 15.0
    # announce the API with zeroconf on this interface address ("" = do not announce)
    zeroconf_address: str = ""
    heartbeat_interval: float = 5.0
    # elastic IPs are allocated from this IPv4 network
    public_pool: str = "198.18.200.0/24"

    @property
    def agent_api_address(self) -> str:
        if self.agent_api:
            return self.agent_api
        host, _, port = self.api.rpartition(":")
        return f"{host}:{int(port) + 1}"

    def validate(self) -> None:
        if self.zeroconf_address:
            try:
                ipaddress.IPv4Address(self.zeroconf_address)
            except ValueError:
                raise ConfigError(f"zeroconf_address must be an IPv4 interface address, got "
                                  f"{self.zeroconf_address!r}") from None
        try:
            pool = ipaddress.IPv4Network(self.public_pool)
        except ValueError:
            raise ConfigError(f"public_pool must be an IPv4 network like 198.18.200.0/24, got "
                              f"{self.public_pool!r}") from None
        if pool.prefixlen > 30:
            raise ConfigError(f"public_pool {self.public_pool} is too small: give a /30 or larger")
        if self.host_grace <= 0 or self.heartbeat_interval <= 0 or self.heartbeat_interval >= self.host_grace:
            raise ConfigError("need 0 < heartbeat_interval < host_grace")
        for name in ("api", "raft", *(["agent_api"] if self.agent_api else []), *[f"peer {p}" for p in self.peers]):
            value = getattr(self, name) if not name.startswith("peer ") else name[5:]
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{name} must be HOST:PORT, got {value!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if not self.tls_cert and not self.insecure_http and not is_loopback(self.api.rpartition(":")[0]):
            raise ConfigError(f"refusing plain HTTP on non-loopback address {self.api}: give --tls-cert/--tls-key "
                              "(or --insecure-http if a proxy terminates TLS)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


ENV_PREFIX = "THECLOUD_"


def load(flags: dict[str, Any], config_file: str | None) -> ControllerConfig:
    merged: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                raw = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        merged.update({k.replace("-", "_"): v for k, v in raw.get("controller", raw).items()})
    for name in ControllerConfig.__dataclass_fields__:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            merged[name] = _from_env(name, env)
    merged.update({k: v for k, v in flags.items() if v is not None and v != ()})
    unknown = set(merged) - set(ControllerConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    config = ControllerConfig(**merged)
    config.peers = list(config.peers)
    config.validate()
    return config


def _from_env(name: str, value: str) -> Any:
    if name == "peers":
        return [p for p in value.replace(",", " ").split() if p]
    if name == "insecure_http":
        return value.lower() in ("1", "true", "yes")
    if name in ("commit_timeout", "host_grace", "heartbeat_interval"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be a number, got {value!r}") from None
    return value
