"""Local certificates and keys for the devcluster, made with the ``cryptography`` package.

One throw-away CA signs the kube-apiserver serving certificate (valid for 127.0.0.1, so clients can
verify it) and the client certificates of the admin, the controller manager and the kubelet, all in
``system:masters``: this is a single-user test cluster, RBAC is on for the workloads only.
A separate RSA key signs service-account tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
CLIENTS = ("admin", "kube-controller-manager", "kubelet")
SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")


@dataclass(frozen=True)
class Pki:
    """Paths of the files in the pki directory."""

    root: Path

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.cert("ca")

    @property
    def sa_key(self) -> Path:
        return self.key("sa")


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Back-dated a little so a freshly started component never sees "not yet valid".
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _leaf(
    pki: Pki,
    name: str,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> x509.CertificateBuilder:
    key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.key(name), key)
    return (
        _builder(subject, ca[0].subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )


def _sign(
    pki: Pki, name: str, builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    cert = builder.sign(key, hashes.SHA256())
    pki.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def generate(root: Path) -> Pki:
    """Create a fresh CA, serving and client certificates and the service-account key."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.key("ca"), ca_key)
    ca_name = _name("devcluster-ca")
    ca_builder = _builder(ca_name, ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    ca = (_sign(pki, "ca", ca_builder, ca_key), ca_key)

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = _leaf(pki, "apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, ca)
    _sign(pki, "apiserver", server.add_extension(x509.SubjectAlternativeName(sans), False), ca_key)
    for client in CLIENTS:
        subject = _name(client, "system:masters")
        _sign(pki, client, _leaf(pki, client, subject, ExtendedKeyUsageOID.CLIENT_AUTH, ca), ca_key)

    # RSA: every service-account token consumer understands RS256.
    _write_key(pki.sa_key, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return pki
