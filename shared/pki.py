"""Certificates for agent <-> controller mutual TLS: key and CSR creation, identities, SSL contexts.

Identities: agents carry CN ``host:<host id>`` and the DNS name ``<host id>.host.thecloud``; controllers
carry CN ``thecloud-controller`` and the DNS name ``controller.thecloud``. Both are signed by the cluster CA,
so a client checks the chain AND the name it expects (TLS host name verification against that DNS name,
whatever address it dialled), and a server checks the client's CN.
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CONTROLLER_CN = "thecloud-controller"
CONTROLLER_NAME = "controller.thecloud"
HOST_CN_PREFIX = "host:"


def host_dns_name(host_id: str) -> str:
    return f"{host_id}.host.thecloud"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def csr_pem(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def host_cn(host_id: str) -> str:
    return HOST_CN_PREFIX + host_id


def peer_common_name(peercert: dict[str, Any] | None) -> str | None:
    """The CN of a verified peer certificate as returned by ``SSLSocket.getpeercert()``."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def server_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """Serves TLS and requires a client certificate signed by the cluster CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    # the peer of a connection never changes (servers cache the host id read from its certificate)
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def client_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """Presents our certificate and trusts only the cluster CA. Pass ``server_hostname`` (CONTROLLER_NAME or
    host_dns_name(id)) with every connection: peers are dialled by address, verified by role name."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
