"""The host identity on disk: host id, name, certificate and key, cluster CA, known controllers.

Shared by the daemons of one host (agent, netd, storaged): they all speak for the same host.

Written once by ``thecloud-agent join``; files are replaced atomically and keys are mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

IDENTITY_FILE = "identity.json"


class IdentityError(Exception):
    pass


@dataclass
class HostIdentity:
    data_dir: str
    host_id: str
    name: str
    zone: str
    controllers: list[str] = field(default_factory=list)

    @property
    def cert_file(self) -> str:
        return os.path.join(self.data_dir, "host.crt")

    @property
    def key_file(self) -> str:
        return os.path.join(self.data_dir, "host.key")

    @property
    def ca_file(self) -> str:
        return os.path.join(self.data_dir, "ca.crt")


def write_private(path: str, content: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(identity: HostIdentity, cert: str, key: bytes, ca: str) -> None:
    os.makedirs(identity.data_dir, mode=0o700, exist_ok=True)
    write_private(identity.key_file, key)
    write_private(identity.cert_file, cert.encode())
    write_private(identity.ca_file, ca.encode())
    save_meta(identity)


def save_meta(identity: HostIdentity) -> None:
    meta = {"host_id": identity.host_id, "name": identity.name, "zone": identity.zone,
            "controllers": identity.controllers}
    write_private(os.path.join(identity.data_dir, IDENTITY_FILE), json.dumps(meta, indent=2).encode())


def load(data_dir: str) -> HostIdentity:
    path = os.path.join(data_dir, IDENTITY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise IdentityError(f"{data_dir} holds no host identity; run `thecloud-agent join` first") from None
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read {path}: {exc}") from None
    identity = HostIdentity(data_dir=data_dir, host_id=str(meta["host_id"]), name=str(meta["name"]),
                            zone=str(meta.get("zone") or "default"), controllers=list(meta.get("controllers", [])))
    for needed in (identity.cert_file, identity.key_file, identity.ca_file):
        if not os.path.exists(needed):
            raise IdentityError(f"{needed} is missing; join this host again")
    return identity
