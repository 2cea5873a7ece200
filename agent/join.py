"""``thecloud-agent join``: spends a one-time token on a host identity and a certificate from the cluster CA."""

from __future__ import annotations

import os
import socket

import httpx

from shared import pki
from shared.hostidentity import IDENTITY_FILE, HostIdentity, IdentityError, save


def join(controller_url: str, token: str, data_dir: str, name: str | None, zone: str | None,
         ca_file: str | None = None) -> HostIdentity:
    if os.path.exists(os.path.join(data_dir, IDENTITY_FILE)):
        raise IdentityError(f"{data_dir} already holds a host identity; use a new data dir to join again")
    key = pki.new_key()
    body = {"token": token, "name": name or socket.gethostname(), "csr": pki.csr_pem(key, "join")}
    if zone:
        body["zone"] = zone
    try:
        response = httpx.post(controller_url.rstrip("/") + "/v1/hosts/join", json=body, timeout=30.0,
                              verify=ca_file or True)
    except httpx.HTTPError as exc:
        raise IdentityError(f"cannot reach the controller at {controller_url}: {exc}") from None
    if response.status_code != 201:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise IdentityError(f"join refused ({response.status_code}): {message}")
    joined = response.json()
    identity = HostIdentity(data_dir=data_dir, host_id=joined["host_id"], name=joined["name"],
                            zone=zone or "default", controllers=list(joined["controllers"]))
    save(identity, joined["certificate"], pki.key_pem(key), joined["ca_certificate"])
    return identity
