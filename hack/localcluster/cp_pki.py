"""The cluster's PKI: one CA, the apiserver's serving certificate, client certificates, SA keys.

Kubernetes authenticates clients by certificate: the subject's CN is the user and each O is a
group. So `system:masters` makes the admin, `system:node:<name>` in `system:nodes` lets the Node
authorizer scope the node agent, and the controller-manager and scheduler get the identities their
bootstrap RBAC roles are bound to. ECDSA P-256 keys: quick to make, accepted everywhere here.

Files are created once and kept across `down`/`up`, so the kubeconfigs users copied stay valid;
a missing file (or a deleted `pki/` folder) is recreated on the next `up`, and a leaf certificate
that no longer matches (other subject or SANs, other CA, near expiry) is reissued.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
CA_VALIDITY = datetime.timedelta(days=3650)
# A certificate this close to expiry is reissued on the next `up`.
RENEW_BEFORE = datetime.timedelta(days=30)

APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# Loopback for this machine, the bridge for pods, the `kubernetes` Service's ClusterIP.
APISERVER_IPS = ("127.0.0.1", "198.18.0.1", "198.19.0.1")


@dataclass(frozen=True)
class ClientCert:
    """A client identity: file stem, user (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


def client_certs(node_name: str) -> tuple[ClientCert, ...]:
    """Every client identity the cluster hands out."""
    return (
        ClientCert("admin", "llmop-admin", ("system:masters",)),
        ClientCert("controller-manager", "system:kube-controller-manager"),
        ClientCert("scheduler", "system:kube-scheduler"),
        ClientCert("node", f"system:node:{node_name}", ("system:nodes",)),
        # The apiserver's identity towards the node agent (logs, exec), should it serve them.
        ClientCert(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        ),
    )


def subject(user: str, groups: tuple[str, ...] = ()) -> x509.Name:
    """Pure: an X.509 subject with CN=user and one O per group."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return x509.Name(attrs)


def apiserver_sans() -> x509.SubjectAlternativeName:
    """Pure: the names and addresses clients and pods use to reach the apiserver."""
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_DNS]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in APISERVER_IPS]
    return x509.SubjectAlternativeName(names)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _builder(
    name: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    validity: datetime.timedelta = VALIDITY,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )


def is_current(
    cert: x509.Certificate,
    *,
    name: x509.Name,
    sans: x509.SubjectAlternativeName | None,
    issuer: x509.Certificate,
    now: datetime.datetime,
) -> bool:
    """Pure: the certificate still says what we would issue today and is far from expiry.

    So a changed node name, a new SAN, a regenerated CA or a year's passing reissues it.
    """
    if cert.subject != name or cert.issuer != issuer.subject:
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if sans is None:
        return True
    try:
        found = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(found) == set(sans)


def ensure_ca(pki: Path) -> None:
    """Create `ca.crt`/`ca.key` unless both exist."""
    if (pki / "ca.crt").exists() and (pki / "ca.key").exists():
        return
    key = _new_key()
    name = subject("llm-operator-local-ca")
    cert = (
        _builder(name, name, key, CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki / "ca.key", key)
    _write_cert(pki / "ca.crt", cert)


def _issue(
    pki: Path,
    stem: str,
    *,
    name: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: x509.SubjectAlternativeName | None = None,
) -> None:
    """Sign `<stem>.crt`/`<stem>.key` with the CA unless a current pair exists."""
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    crt = pki / f"{stem}.crt"
    if crt.exists() and (pki / f"{stem}.key").exists():
        now = datetime.datetime.now(datetime.UTC)
        existing = x509.load_pem_x509_certificate(crt.read_bytes())
        if is_current(existing, name=name, sans=sans, issuer=ca_cert, now=now):
            return
    ca_key = _load_key(pki / "ca.key")
    key = _new_key()
    builder = (
        _builder(name, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    _write_key(pki / f"{stem}.key", key)
    _write_cert(pki / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))


def ensure_client(pki: Path, client: ClientCert) -> None:
    """Issue one client identity outside the standard set (the real node's kubelet)."""
    _issue(
        pki,
        client.stem,
        name=subject(client.user, client.groups),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )


def ensure_service_account_keys(pki: Path) -> None:
    """`sa.key` signs service-account tokens (apiserver, controller-manager); `sa.pub` checks them."""
    if (pki / "sa.key").exists() and (pki / "sa.pub").exists():
        return
    key = _new_key()
    _write_key(pki / "sa.key", key)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (pki / "sa.pub").write_bytes(pub)


def ensure_pki(pki: Path, *, node_name: str) -> None:
    """Create whatever of the cluster's keys and certificates is missing."""
    pki.mkdir(parents=True, exist_ok=True)
    ensure_ca(pki)
    _issue(
        pki,
        "apiserver",
        name=subject("kube-apiserver"),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=apiserver_sans(),
    )
    for client in client_certs(node_name):
        ensure_client(pki, client)
    ensure_service_account_keys(pki)
