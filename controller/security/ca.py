"""The cluster CA. Its key is derived from the cluster secret, so every controller holds the same CA
without replicating a private key through the log; each controller mints its own server certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.security.cluster_secret import derive
from shared import pki

CA_NAME = "thecloud cluster CA"
HOST_CERT_DAYS = 365
# A fixed validity window keeps the CA certificate the same on every controller (bar the signature).
CA_NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
CA_NOT_AFTER = datetime.datetime(2124, 1, 1, tzinfo=datetime.UTC)
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


class CsrError(ValueError):
    pass


@dataclass(frozen=True)
class ClusterCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def load_ca(cluster_secret: bytes) -> ClusterCA:
    scalar = int.from_bytes(derive(cluster_secret, "cluster-ca-key", 48), "big") % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(int.from_bytes(ski.digest[:16], "big") >> 1)
            .not_valid_before(CA_NOT_BEFORE).not_valid_after(CA_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return ClusterCA(key, cert)


def _issue(ca: ClusterCA, public_key: ec.EllipticCurvePublicKey, common_name: str, days: int,
           sans: list[x509.GeneralName]) -> str:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca.cert.subject).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                                     ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def sign_host_csr(ca: ClusterCA, csr_text: str, host_id: str) -> str:
    """Signs an agent's CSR for ``host:<host_id>``, whatever name the CSR asked for."""
    try:
        csr = x509.load_pem_x509_csr(csr_text.encode())
    except ValueError as exc:
        raise CsrError(f"csr is not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise CsrError("csr signature is invalid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CsrError("csr must carry an EC (P-256) public key")
    return _issue(ca, public_key, pki.host_cn(host_id), HOST_CERT_DAYS, [x509.DNSName(pki.host_dns_name(host_id))])


def write_controller_credentials(ca: ClusterCA, directory: str, address: str) -> tuple[str, str, str]:
    """Mints this controller's certificate (new key each start) and writes cert, key and CA PEM files."""
    key = pki.new_key()
    host = address.rsplit(":", 1)[0].strip("[]")
    sans: list[x509.GeneralName] = [x509.DNSName(pki.CONTROLLER_NAME)]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.append(x509.DNSName(host))
    cert = _issue(ca, key.public_key(), pki.CONTROLLER_CN, HOST_CERT_DAYS, sans)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths = (os.path.join(directory, "controller.crt"), os.path.join(directory, "controller.key"),
             os.path.join(directory, "ca.crt"))
    for path, content in zip(paths, (cert.encode(), pki.key_pem(key), ca.cert_pem.encode()), strict=True):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    return paths
