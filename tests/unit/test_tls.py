"""Unit tests of hyok.common.tls: the local CA, certificate files, contexts and subject matching."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hyok.common.errors import ConfigError
from hyok.common.tls import (
    TLS12_CIPHERS,
    CertificateBundle,
    SubjectAllowList,
    certificate_days_left,
    certificate_subject,
    client_ssl_context,
    create_ca,
    issue_client_certificate,
    issue_server_certificate,
    server_ssl_context,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CLIENT_SUBJECT = "CN=kms.hyok.internal,O=hyok"


@pytest.fixture(scope="module")
def ca() -> CertificateBundle:
    return create_ca("hyok test CA", days=3650, now=NOW)


@pytest.fixture(scope="module")
def server(ca: CertificateBundle) -> CertificateBundle:
    return issue_server_certificate(
        ca, hostnames=["localhost", "127.0.0.1", "::1"], days=365, now=NOW
    )


@pytest.fixture(scope="module")
def client(ca: CertificateBundle) -> CertificateBundle:
    return issue_client_certificate(ca, subject=CLIENT_SUBJECT, days=365, now=NOW)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _der(bundle: CertificateBundle) -> bytes:
    return bundle.certificate.public_bytes(serialization.Encoding.DER)


def _self_signed(name: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _policy_builder(ca: CertificateBundle) -> verification.PolicyBuilder:
    store = verification.Store([ca.certificate])
    return verification.PolicyBuilder().store(store).time(NOW + timedelta(days=1))


def _write_pair(bundle: CertificateBundle, directory: Path, name: str) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    bundle.write(cert_path, key_path)
    return cert_path, key_path


# ---------------------------------------------------------------------------
# create_ca


def test_ca_is_self_signed_p256_sha256(ca: CertificateBundle) -> None:
    certificate = ca.certificate
    public_key = certificate.public_key()

    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    assert certificate.subject == certificate.issuer
    assert certificate.subject.rfc4514_string() == "CN=hyok test CA"
    certificate.verify_directly_issued_by(certificate)


def test_ca_extensions(ca: CertificateBundle) -> None:
    extensions = ca.certificate.extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    key_identifier = extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    authority = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)

    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert authority.value.key_identifier == key_identifier.value.digest


def test_ca_validity_window(ca: CertificateBundle) -> None:
    certificate = ca.certificate

    assert certificate.not_valid_after_utc == NOW + timedelta(days=3650)
    assert certificate.not_valid_before_utc < NOW
    assert NOW - certificate.not_valid_before_utc <= timedelta(minutes=5)


def test_ca_rejects_bad_common_name() -> None:
    with pytest.raises(ConfigError, match="invalid CA common name ''"):
        create_ca("", days=1)
    with pytest.raises(ConfigError, match="invalid CA common name"):
        create_ca("x" * 65, days=1)


def test_ca_rejects_zero_days() -> None:
    with pytest.raises(ConfigError, match="at least 1 day, got 0"):
        create_ca("hyok test CA", days=0)


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        create_ca("hyok test CA", days=1, now=datetime(2025, 1, 1))


# ---------------------------------------------------------------------------
# issue_server_certificate


def test_server_certificate_sans(server: CertificateBundle) -> None:
    names = server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_server_certificate_usage(server: CertificateBundle, ca: CertificateBundle) -> None:
    extensions = server.certificate.extensions
    key_usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    authority = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

    assert list(key_usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not constraints.ca
    assert authority.key_identifier == ca_key_id.value.digest
    assert server.certificate.subject.rfc4514_string() == "CN=localhost"
    assert server.certificate.not_valid_after_utc == NOW + timedelta(days=365)
    server.certificate.verify_directly_issued_by(ca.certificate)


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1"])
def test_server_certificate_verifies_for_loopback(
    server: CertificateBundle, ca: CertificateBundle, hostname: str
) -> None:
    subject: verification.Subject
    try:
        subject = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        subject = x509.DNSName(hostname)
    verifier = _policy_builder(ca).build_server_verifier(subject)

    chain = verifier.verify(server.certificate, [])

    assert chain[-1] == ca.certificate


def test_server_certificate_normalises_hostnames(ca: CertificateBundle) -> None:
    bundle = issue_server_certificate(
        ca, hostnames=["KMS.Example.Internal", "kms.example.internal", "*.svc.local"], days=1
    )
    names = bundle.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    assert names.value.get_values_for_type(x509.DNSName) == [
        "kms.example.internal",
        "*.svc.local",
    ]
    assert bundle.certificate.subject.rfc4514_string() == "CN=kms.example.internal"


def test_server_certificate_long_first_hostname(ca: CertificateBundle) -> None:
    hostname = "a" * 60 + ".example.internal"
    bundle = issue_server_certificate(ca, hostnames=[hostname], days=1)
    names = bundle.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    assert len(bundle.certificate.subject) == 0
    assert names.critical
    assert names.value.get_values_for_type(x509.DNSName) == [hostname]


@pytest.mark.parametrize(
    "hostname", ["", "under_score.example", "bad host", "-leading.example", "münchen.example"]
)
def test_server_certificate_rejects_hostname(ca: CertificateBundle, hostname: str) -> None:
    with pytest.raises(ConfigError, match="invalid hostname"):
        issue_server_certificate(ca, hostnames=["localhost", hostname], days=1)


def test_server_certificate_needs_hostname(ca: CertificateBundle) -> None:
    with pytest.raises(ConfigError, match="at least one hostname"):
        issue_server_certificate(ca, hostnames=[], days=1)


def test_server_certificate_hostnames_not_string(ca: CertificateBundle) -> None:
    with pytest.raises(TypeError, match="not a string"):
        issue_server_certificate(ca, hostnames="localhost", days=1)


def test_certificate_cannot_outlive_ca(ca: CertificateBundle) -> None:
    with pytest.raises(ConfigError, match="use at most 3650 days") as caught:
        issue_server_certificate(ca, hostnames=["localhost"], days=3651, now=NOW)

    assert "hyok test CA" in str(caught.value)


def test_certificate_may_end_with_ca(ca: CertificateBundle) -> None:
    bundle = issue_server_certificate(ca, hostnames=["localhost"], days=3650, now=NOW)

    assert bundle.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_expired_ca_cannot_issue(ca: CertificateBundle) -> None:
    later = NOW + timedelta(days=3650)

    with pytest.raises(ConfigError, match="in less than a day; create a new CA"):
        issue_client_certificate(ca, subject=CLIENT_SUBJECT, days=1, now=later)


def test_leaf_cannot_issue(server: CertificateBundle) -> None:
    with pytest.raises(ConfigError, match="is not a CA"):
        issue_server_certificate(server, hostnames=["localhost"], days=1)


# ---------------------------------------------------------------------------
# issue_client_certificate


def test_client_certificate_subject_and_usage(
    client: CertificateBundle, ca: CertificateBundle
) -> None:
    certificate = client.certificate
    key_usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    assert certificate.subject == x509.Name.from_rfc4514_string(CLIENT_SUBJECT)
    assert certificate.subject.rfc4514_string() == CLIENT_SUBJECT
    assert list(key_usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    certificate.verify_directly_issued_by(ca.certificate)


@pytest.mark.parametrize("subject", ["kms.hyok.internal", "", "CN=", "XX=kms", "CN=#0c03616263"])
def test_client_certificate_rejects_subject(ca: CertificateBundle, subject: str) -> None:
    with pytest.raises(ConfigError, match="invalid subject name") as caught:
        issue_client_certificate(ca, subject=subject, days=1)

    assert repr(subject) in str(caught.value)


# ---------------------------------------------------------------------------
# CertificateBundle


def test_bundle_repr_hides_key(client: CertificateBundle) -> None:
    text = repr(client)
    key_body = b"".join(client.key_pem.splitlines()[1:-1]).decode()

    assert "kms.hyok.internal" in text
    assert "PRIVATE KEY" not in text
    assert key_body[:16] not in text
    assert "key_pem=<hidden>" in text


def test_bundle_rejects_mismatched_key(
    client: CertificateBundle, server: CertificateBundle
) -> None:
    with pytest.raises(ConfigError, match="does not match") as caught:
        CertificateBundle(client.cert_pem, server.key_pem)

    assert "PRIVATE KEY" not in str(caught.value)


def test_write_modes(client: CertificateBundle, tmp_path: Path, umask_022: None) -> None:
    cert_path, key_path = _write_pair(client, tmp_path, "client")

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert cert_path.read_bytes() == client.cert_pem
    assert key_path.read_bytes() == client.key_pem


def test_write_never_chmods(
    client: CertificateBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mode must be set when the file is created: a chmod afterwards
    # leaves a moment in which the key is readable by others.
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod called")

    monkeypatch.setattr(os, "chmod", forbidden)
    monkeypatch.setattr(os, "fchmod", forbidden)
    previous = os.umask(0)
    try:
        _, key_path = _write_pair(client, tmp_path, "client")
        client.write(tmp_path / "again.pem", key_path, overwrite=True)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["cert", "key"])
def test_write_no_overwrite(client: CertificateBundle, tmp_path: Path, existing: str) -> None:
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client-key.pem"
    present, absent = (cert_path, key_path) if existing == "cert" else (key_path, cert_path)
    present.write_bytes(b"old")

    with pytest.raises(ConfigError, match="already exists") as caught:
        client.write(cert_path, key_path)

    assert str(present) in str(caught.value)
    assert present.read_bytes() == b"old"
    assert not absent.exists()


def test_write_overwrite_replaces_loose_key_file(
    client: CertificateBundle, tmp_path: Path, umask_022: None
) -> None:
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client-key.pem"
    cert_path.write_bytes(b"old certificate")
    key_path.write_bytes(b"old key")
    key_path.chmod(0o644)

    client.write(cert_path, key_path, overwrite=True)

    assert key_path.read_bytes() == client.key_pem
    assert cert_path.read_bytes() == client.cert_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["client-key.pem", "client.pem"]


def test_write_same_path_rejected(client: CertificateBundle, tmp_path: Path) -> None:
    path = tmp_path / "both.pem"

    with pytest.raises(ConfigError, match="cannot share one file"):
        client.write(path, path)
    assert not path.exists()


def test_write_missing_directory(client: CertificateBundle, tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    with pytest.raises(ConfigError, match="cannot create certificate file"):
        client.write(missing / "client.pem", missing / "client-key.pem")


def test_load_round_trip(client: CertificateBundle, tmp_path: Path) -> None:
    cert_path, key_path = _write_pair(client, tmp_path, "client")

    loaded = CertificateBundle.load(cert_path, key_path)

    assert loaded.cert_pem == client.cert_pem
    assert loaded.key_pem == client.key_pem
    assert loaded.certificate == client.certificate


def test_load_names_mismatched_key_file(
    client: CertificateBundle, server: CertificateBundle, tmp_path: Path
) -> None:
    cert_path, _ = _write_pair(client, tmp_path, "client")
    _, other_key = _write_pair(server, tmp_path, "server")

    with pytest.raises(ConfigError, match="does not match") as caught:
        CertificateBundle.load(cert_path, other_key)

    assert str(other_key) in str(caught.value)
    assert str(cert_path) in str(caught.value)


def test_loaded_ca_issues(ca: CertificateBundle, tmp_path: Path) -> None:
    cert_path, key_path = _write_pair(ca, tmp_path, "ca")
    loaded = CertificateBundle.load(cert_path, key_path)

    bundle = issue_client_certificate(loaded, subject=CLIENT_SUBJECT, days=1)

    bundle.certificate.verify_directly_issued_by(ca.certificate)


# ---------------------------------------------------------------------------
# certificate_days_left


def test_days_left(client: CertificateBundle, tmp_path: Path) -> None:
    cert_path, _ = _write_pair(client, tmp_path, "client")

    assert certificate_days_left(cert_path, now=NOW) == pytest.approx(365.0)
    assert certificate_days_left(cert_path, now=NOW + timedelta(days=100, hours=12)) == (
        pytest.approx(264.5)
    )
    assert certificate_days_left(cert_path, now=NOW + timedelta(days=366)) == pytest.approx(-1.0)


def test_days_left_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"

    with pytest.raises(ConfigError, match="does not exist") as caught:
        certificate_days_left(missing)

    assert str(missing) in str(caught.value)


def test_days_left_not_pem(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate\n")

    with pytest.raises(ConfigError, match="does not contain a valid PEM certificate"):
        certificate_days_left(path)


# ---------------------------------------------------------------------------
# SubjectAllowList and certificate_subject


def test_allow_list_allows_exact_subject(client: CertificateBundle) -> None:
    allow_list = SubjectAllowList(["CN=other.hyok.internal", CLIENT_SUBJECT])

    assert allow_list.allows(_der(client))
    assert allow_list.subjects == ("CN=other.hyok.internal", CLIENT_SUBJECT)


def test_allow_list_ignores_rdn_order(client: CertificateBundle) -> None:
    assert SubjectAllowList(["O=hyok,CN=kms.hyok.internal"]).allows(_der(client))


def test_allow_list_lower_case_attribute_types(client: CertificateBundle) -> None:
    assert SubjectAllowList(["cn=kms.hyok.internal,o=hyok"]).allows(_der(client))


@pytest.mark.parametrize(
    "allowed",
    [
        "CN=KMS.hyok.internal,O=hyok",
        "CN=kms.hyok.internal,O=Hyok",
        "CN=kms.hyok.internal",
        "CN=kms.hyok.internal,O=hyok,C=US",
        "CN=kms.hyok.internal\\ ,O=hyok",
        "CN=kms.hyok.internal+O=hyok",
    ],
)
def test_allow_list_rejects_near_miss(client: CertificateBundle, allowed: str) -> None:
    assert not SubjectAllowList([allowed]).allows(_der(client))


def test_allow_list_repeated_attribute() -> None:
    two_units = x509.Name.from_rfc4514_string("CN=kms,OU=a,OU=b")
    one_unit = x509.Name.from_rfc4514_string("CN=kms,OU=a")
    certificate = _self_signed(two_units).public_bytes(serialization.Encoding.DER)

    assert SubjectAllowList(["CN=kms,OU=b,OU=a"]).allows(certificate)
    assert not SubjectAllowList([one_unit.rfc4514_string()]).allows(certificate)
    assert not SubjectAllowList(["CN=kms,OU=a,OU=a,OU=b"]).allows(certificate)


def test_allow_list_rejects_unparsable_der() -> None:
    assert not SubjectAllowList([CLIENT_SUBJECT]).allows(b"\x30\x03\x02\x01\x00")


@pytest.mark.parametrize("subject", ["garbage", "", "CN=", "XX=foo", "CN=#0c03616263"])
def test_allow_list_invalid_subject(subject: str) -> None:
    with pytest.raises(ConfigError, match="invalid subject name") as caught:
        SubjectAllowList([CLIENT_SUBJECT, subject])

    assert repr(subject) in str(caught.value)


def test_allow_list_empty() -> None:
    with pytest.raises(ConfigError, match="allow-list is empty"):
        SubjectAllowList([])


def test_allow_list_string_not_sequence() -> None:
    with pytest.raises(TypeError, match="not a string"):
        SubjectAllowList(CLIENT_SUBJECT)


def test_certificate_subject_escapes_control_characters() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil\nINFO fake line")])
    certificate = _self_signed(name).public_bytes(serialization.Encoding.DER)

    assert certificate_subject(certificate) == "CN=evil\\0AINFO fake line"


def test_certificate_subject_unparsable() -> None:
    assert certificate_subject(b"not DER") == "<unparsable certificate>"


# ---------------------------------------------------------------------------
# server_ssl_context and client_ssl_context


@pytest.fixture(scope="module")
def files(
    ca: CertificateBundle,
    server: CertificateBundle,
    client: CertificateBundle,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    paths: dict[str, Path] = {}
    for name, bundle in (("ca", ca), ("server", server), ("client", client)):
        paths[name], paths[f"{name}-key"] = _write_pair(bundle, directory, name)
    return paths


def test_server_context_ciphers(files: dict[str, Path]) -> None:
    context = server_ssl_context(files["server"], files["server-key"])
    tls12 = {cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"}
    tls13 = {cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.3"}

    assert tls12 == set(TLS12_CIPHERS.split(":"))
    assert {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} <= tls13


def test_server_context_options(files: dict[str, Path]) -> None:
    context = server_ssl_context(files["server"], files["server-key"])

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.verify_mode == ssl.CERT_NONE


def test_server_context_tls13_only(files: dict[str, Path]) -> None:
    context = server_ssl_context(files["server"], files["server-key"], min_version="1.3")

    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_server_context_trusts_only_client_ca(files: dict[str, Path]) -> None:
    context = server_ssl_context(files["server"], files["server-key"], client_ca_file=files["ca"])

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "hyok test CA"),),)


def test_server_context_bad_min_version(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=re.escape("use '1.2' or '1.3'")):
        server_ssl_context(files["server"], files["server-key"], min_version="1.1")  # type: ignore[arg-type]


def test_server_context_missing_cert(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "server.pem"

    with pytest.raises(ConfigError, match=re.escape(f"certificate file {missing} does not exist")):
        server_ssl_context(missing, files["server-key"])


def test_server_context_directory_as_key(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"cannot read private key file {tmp_path}")):
        server_ssl_context(files["server"], tmp_path)


def test_server_context_key_mismatch(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="does not match") as caught:
        server_ssl_context(files["server"], files["client-key"])

    assert str(files["client-key"]) in str(caught.value)


def test_server_context_key_file_not_pem(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")

    with pytest.raises(
        ConfigError, match=re.escape(f"private key file {path} does not contain")
    ) as caught:
        server_ssl_context(files["server"], path)

    assert "AAAA" not in str(caught.value)


def test_server_context_encrypted_key(server: CertificateBundle, tmp_path: Path) -> None:
    cert_path = tmp_path / "server.pem"
    key_path = tmp_path / "server-key.pem"
    cert_path.write_bytes(server.cert_pem)
    key = serialization.load_pem_private_key(server.key_pem, password=None)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    with pytest.raises(ConfigError, match="is encrypted with a passphrase"):
        server_ssl_context(cert_path, key_path)


def test_server_context_rejects_ed25519(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name.from_rfc4514_string("CN=localhost")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, None)
    )
    bundle = CertificateBundle(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path, key_path = _write_pair(bundle, tmp_path, "ed25519")

    with pytest.raises(ConfigError, match="need an ECDSA or RSA key"):
        server_ssl_context(cert_path, key_path)


def test_server_context_missing_client_ca(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "client-ca.pem"

    with pytest.raises(ConfigError, match=re.escape(f"client CA file {missing} does not exist")):
        server_ssl_context(files["server"], files["server-key"], client_ca_file=missing)


def test_client_context(files: dict[str, Path]) -> None:
    context = client_ssl_context(
        files["ca"], cert_file=files["client"], key_file=files["client-key"]
    )

    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] == 1


def test_client_context_needs_cert_and_key(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="needs both cert_file and key_file"):
        client_ssl_context(files["ca"], cert_file=files["client"])


def test_client_context_ca_not_pem(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"CA file \S+ does not contain a valid PEM certificate"):
        client_ssl_context(files["client-key"])


# ---------------------------------------------------------------------------
# Handshakes in memory
#
# These run OpenSSL on both sides through memory BIOs, so they show the
# server-side reason for each rejection and the alert the client receives.
# Over a socket, asyncio and uvloop drop that alert (see the integration tests).

INTRUDER_SUBJECT = "CN=intruder.hyok.internal,O=hyok"


@dataclass
class Handshake:
    client: ssl.SSLObject
    server: ssl.SSLObject
    client_error: ssl.SSLError | None = None
    server_error: ssl.SSLError | None = None


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> Handshake:
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    result = Handshake(
        client=client_context.wrap_bio(client_in, client_out, server_hostname="localhost"),
        server=server_context.wrap_bio(server_in, server_out, server_side=True),
    )
    client_done = server_done = False
    for _ in range(10):
        if not client_done and result.client_error is None:
            try:
                result.client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                result.client_error = exc
        server_in.write(client_out.read())
        if not server_done and result.server_error is None:
            try:
                result.server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                result.server_error = exc
        client_in.write(server_out.read())

    # A TLS 1.3 client completes before the server checks its certificate, and
    # reads the server's alert only afterwards.
    if client_done and result.server_error is not None:
        try:
            result.client.read(1)
        except ssl.SSLError as exc:
            result.client_error = exc
    return result


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Certificate files that are valid now, for handshakes."""
    directory = tmp_path_factory.mktemp("live")
    ca = create_ca("hyok test CA", days=30)
    other_ca = create_ca("other CA", days=30)
    long_ago = datetime.now(UTC) - timedelta(days=10)
    bundles = {
        "ca": ca,
        "server": issue_server_certificate(ca, hostnames=["localhost"], days=7),
        "allowed": issue_client_certificate(ca, subject=CLIENT_SUBJECT, days=7),
        "intruder": issue_client_certificate(ca, subject=INTRUDER_SUBJECT, days=7),
        "expired": issue_client_certificate(ca, subject=CLIENT_SUBJECT, days=1, now=long_ago),
        "foreign": issue_client_certificate(other_ca, subject=CLIENT_SUBJECT, days=7),
    }
    paths: dict[str, Path] = {}
    for name, bundle in bundles.items():
        paths[name], paths[f"{name}-key"] = _write_pair(bundle, directory, name)
    return paths


def _server_context(live: dict[str, Path], *, mtls: bool = False) -> ssl.SSLContext:
    return server_ssl_context(
        live["server"], live["server-key"], client_ca_file=live["ca"] if mtls else None
    )


def _client_context(
    live: dict[str, Path], client: str | None = None, *, version: str | None = None
) -> ssl.SSLContext:
    if client is None:
        context = client_ssl_context(live["ca"])
    else:
        context = client_ssl_context(
            live["ca"], cert_file=live[client], key_file=live[f"{client}-key"]
        )
    context.set_alpn_protocols(["h2", "http/1.1"])
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_handshake_tls13(live: dict[str, Path]) -> None:
    result = _handshake(_server_context(live), _client_context(live))

    assert result.server_error is None
    assert result.client_error is None
    assert result.server.version() == "TLSv1.3"
    assert result.server.cipher() == ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)
    assert result.server.selected_alpn_protocol() == "http/1.1"
    assert result.server.compression() is None


def test_handshake_tls12(live: dict[str, Path]) -> None:
    result = _handshake(_server_context(live), _client_context(live, version="1.2"))

    assert result.server_error is None
    assert result.server.version() == "TLSv1.2"
    assert result.server.cipher() == ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2", 256)
    assert result.server.selected_alpn_protocol() == "http/1.1"


def test_handshake_tls11_alert(live: dict[str, Path]) -> None:
    client_context = _client_context(live)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client_context.minimum_version = ssl.TLSVersion.TLSv1_1
        client_context.maximum_version = ssl.TLSVersion.TLSv1_1
    client_context.set_ciphers("DEFAULT:@SECLEVEL=0")

    result = _handshake(_server_context(live), client_context)

    assert result.server_error is not None
    assert result.server_error.reason == "UNSUPPORTED_PROTOCOL"
    assert result.client_error is not None
    assert result.client_error.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


@pytest.mark.parametrize(
    "cipher",
    ["ECDHE-ECDSA-AES128-GCM-SHA256", "AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"],
)
def test_handshake_unlisted_cipher_alert(live: dict[str, Path], cipher: str) -> None:
    client_context = _client_context(live, version="1.2")
    client_context.set_ciphers(cipher)

    result = _handshake(_server_context(live), client_context)

    assert result.server_error is not None
    assert result.server_error.reason == "NO_SHARED_CIPHER"
    assert result.client_error is not None
    assert result.client_error.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_handshake_mtls_no_certificate(live: dict[str, Path], version: str) -> None:
    result = _handshake(_server_context(live, mtls=True), _client_context(live, version=version))

    assert result.server_error is not None
    assert result.server_error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert result.client_error is not None
    expected = {"1.2": "SSLV3_ALERT_HANDSHAKE_FAILURE", "1.3": "TLSV13_ALERT_CERTIFICATE_REQUIRED"}
    assert result.client_error.reason == expected[version]


@pytest.mark.parametrize(
    ("client", "verify_message", "alert"),
    [
        ("foreign", "unable to get local issuer certificate", "TLSV1_ALERT_UNKNOWN_CA"),
        ("expired", "certificate has expired", "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
    ],
)
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_handshake_mtls_untrusted_certificate(
    live: dict[str, Path], client: str, verify_message: str, alert: str, version: str
) -> None:
    client_context = _client_context(live, client, version=version)

    result = _handshake(_server_context(live, mtls=True), client_context)

    assert isinstance(result.server_error, ssl.SSLCertVerificationError)
    assert result.server_error.verify_message == verify_message
    assert result.client_error is not None
    assert result.client_error.reason == alert


def test_handshake_mtls_subject_left_to_guard(live: dict[str, Path]) -> None:
    allow_list = SubjectAllowList([CLIENT_SUBJECT])

    allowed = _handshake(_server_context(live, mtls=True), _client_context(live, "allowed"))
    intruder = _handshake(_server_context(live, mtls=True), _client_context(live, "intruder"))

    # OpenSSL accepts both chains, so only the subject check distinguishes them.
    assert allowed.server_error is None
    assert intruder.server_error is None
    assert allow_list.allows(allowed.server.getpeercert(binary_form=True) or b"")
    assert not allow_list.allows(intruder.server.getpeercert(binary_form=True) or b"")
