from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gitsail.dev.pki import make_pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_leaf_certificates_are_signed_by_the_cluster_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", cluster_name="t")
    ca = _cert(pki.ca_cert)
    for leaf in (_cert(pki.serving_cert), _cert(pki.admin_cert)):
        leaf.verify_directly_issued_by(ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_admin_certificate_is_a_client_cert_in_system_masters(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, cluster_name="t")
    admin = _cert(pki.admin_cert)
    orgs = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    eku = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_serving_certificate_covers_loopback_and_in_cluster_names(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, cluster_name="t")
    sans = (
        _cert(pki.serving_cert)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "kubernetes.default.svc"} <= names
    assert {"127.0.0.1", "10.96.0.1"} <= ips


def test_private_keys_are_readable_only_by_the_owner(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, cluster_name="t")
    for key in (pki.ca_key, pki.serving_key, pki.admin_key, pki.sa_key):
        assert key.stat().st_mode & 0o077 == 0
