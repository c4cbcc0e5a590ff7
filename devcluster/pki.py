"""Local certificates and keys for the devcluster, made with the ``cryptography`` package.

One throw-away CA signs the serving certificates of the kube-apiserver (valid for 127.0.0.1 and
the node's address, which is also the ``kubernetes`` Service's ClusterIP, so clients in and out of
pods can verify it) and of the kubelet (the node's address: the apiserver verifies it when it
fetches logs), and the client certificates of the admin, the controller manager, the scheduler,
the kubelet and the apiserver (towards the kubelet), all in ``system:masters``: this is a
single-user test cluster, RBAC is on for the workloads only. A separate RSA key signs
service-account tokens.
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
CLIENTS = ("admin", "kube-controller-manager", "kube-scheduler", "kubelet", "apiserver-kubelet")
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
    ca_key_id = ca[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca[0].subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        # Strict verifiers (Python >= 3.13's ssl module, in the image) require it.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), False
        )
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(
    pki: Pki, name: str, builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    cert = builder.sign(key, hashes.SHA256())
    pki.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def generate(root: Path, node_ip: str, node_name: str) -> Pki:
    """Create a fresh CA, serving and client certificates and the service-account key."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.key("ca"), ca_key)
    ca_name = _name("devcluster-ca")
    ca_builder = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
    )
    ca = (_sign(pki, "ca", ca_builder, ca_key), ca_key)

    node = x509.IPAddress(ipaddress.ip_address(node_ip))
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), node]
    server = _leaf(pki, "apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, ca)
    _sign(pki, "apiserver", server.add_extension(x509.SubjectAlternativeName(sans), False), ca_key)
    kubelet_sans = x509.SubjectAlternativeName([x509.DNSName(node_name), node])
    serving = _leaf(pki, "kubelet-serving", _name(node_name), ExtendedKeyUsageOID.SERVER_AUTH, ca)
    _sign(pki, "kubelet-serving", serving.add_extension(kubelet_sans, False), ca_key)
    for client in CLIENTS:
        subject = _name(client, "system:masters")
        _sign(pki, client, _leaf(pki, client, subject, ExtendedKeyUsageOID.CLIENT_AUTH, ca), ca_key)

    # RSA: every service-account token consumer understands RS256.
    _write_key(pki.sa_key, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return pki
