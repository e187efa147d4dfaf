"""TLS for hyok's listeners and clients: a local CA, SSL contexts and a subject allow-list.

The XKS proxy API v1 requires TLS 1.2 or later, HTTP/1.1 and at least one of
TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 (TLS 1.3), or
ECDHE-RSA-AES256-GCM-SHA384 and ECDHE-ECDSA-AES256-GCM-SHA384 (TLS 1.2).
:func:`server_ssl_context` offers exactly those two suites on TLS 1.2. On TLS
1.3 it keeps OpenSSL's default suites because Python's ``ssl`` module cannot
change them. With OpenSSL 3.0 these are the two TLS 1.3 suites above and
TLS_AES_128_GCM_SHA256.

Certificates made here use ECDSA P-256 keys and SHA-256 signatures. Private
keys are PKCS #8 PEM without a passphrase, so the key file's mode (0600) is
what protects them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import ssl
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hyok.common.errors import ConfigError

__all__ = [
    "TLS12_CIPHERS",
    "CertificateBundle",
    "SubjectAllowList",
    "certificate_days_left",
    "certificate_subject",
    "client_ssl_context",
    "create_ca",
    "issue_client_certificate",
    "issue_server_certificate",
    "server_ssl_context",
]

StrPath = str | os.PathLike[str]

# OpenSSL names of the two TLS 1.2 suites of the XKS proxy API v1. CHACHA20 is
# left out of TLS 1.2 because the API lists it only for TLS 1.3, and clients
# that prefer it (no AES instructions) get it there.
TLS12_CIPHERS: Final = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

_TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# Certificates start this far in the past so that a peer whose clock runs a
# little behind does not reject a certificate issued a moment ago.
_CLOCK_SKEW: Final = timedelta(minutes=5)

# RFC 5280 limits a commonName to 64 characters.
_COMMON_NAME_MAX: Final = 64

_DNS_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME: Final = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*")

# cryptography's RFC 4514 parser accepts these attribute types only in upper
# case. RFC 4514 makes attribute type names case-insensitive, so the lower-case
# forms are added.
_LOWER_CASE_ATTRIBUTE_TYPES: Final = {
    "cn": NameOID.COMMON_NAME,
    "l": NameOID.LOCALITY_NAME,
    "st": NameOID.STATE_OR_PROVINCE_NAME,
    "o": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "c": NameOID.COUNTRY_NAME,
    "street": NameOID.STREET_ADDRESS,
    "dc": NameOID.DOMAIN_COMPONENT,
    "uid": NameOID.USER_ID,
}

_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------------------
# Reading PEM files


def _read_file(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{label} {path} does not exist; check the path") from None
    except PermissionError:
        raise ConfigError(
            f"cannot read {label} {path}: permission denied; "
            "make it readable by the user that runs hyok"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {label} {path}: {exc.strerror}") from None


def _parse_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"{source} does not contain a valid PEM certificate; "
            "expected a block that starts with '-----BEGIN CERTIFICATE-----'"
        ) from None


def _parse_private_key(data: bytes, source: str) -> PrivateKeyTypes:
    # The messages never include the parser's own text, so that no part of
    # the key can reach a log.
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{source} is encrypted with a passphrase; hyok needs an unencrypted "
            "PEM key protected by file mode 0600"
        ) from None
    except UnsupportedAlgorithm:
        raise ConfigError(f"{source} uses a key type this build cannot load") from None
    except ValueError:
        raise ConfigError(
            f"{source} does not contain a valid PEM private key; expected a block that "
            "starts with '-----BEGIN PRIVATE KEY-----' or '-----BEGIN EC PRIVATE KEY-----'"
        ) from None


def _public_key_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    public_key = key.public_key()
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_pair(
    cert_pem: bytes, key_pem: bytes, cert_source: str, key_source: str
) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    certificates = _parse_certificates(cert_pem, cert_source)
    private_key = _parse_private_key(key_pem, key_source)
    if _public_key_der(private_key) != _public_key_der(certificates[0]):
        raise ConfigError(
            f"{key_source} does not match the first certificate in {cert_source}; "
            "use the private key that the certificate was issued for"
        )
    return certificates, private_key


# ---------------------------------------------------------------------------
# Certificates


class CertificateBundle:
    """A PEM certificate (optionally followed by its chain) and its PEM private key.

    The constructor checks that the key matches the first certificate. The repr
    shows the subject and expiry date, never the key.
    """

    __slots__ = ("_certificate", "_private_key", "cert_pem", "key_pem")

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._set(cert_pem, key_pem, "the certificate PEM", "the private key PEM")

    def _set(self, cert_pem: bytes, key_pem: bytes, cert_source: str, key_source: str) -> None:
        certificates, private_key = _load_pair(cert_pem, key_pem, cert_source, key_source)
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self._certificate = certificates[0]
        self._private_key = private_key

    @classmethod
    def load(cls, cert_file: StrPath, key_file: StrPath) -> CertificateBundle:
        """Read a bundle from a certificate file and a key file, naming the bad file on error."""
        cert_path, key_path = Path(cert_file), Path(key_file)
        bundle = cls.__new__(cls)
        bundle._set(
            _read_file(cert_path, "certificate file"),
            _read_file(key_path, "private key file"),
            f"certificate file {cert_path}",
            f"private key file {key_path}",
        )
        return bundle

    @property
    def certificate(self) -> x509.Certificate:
        """The first certificate of ``cert_pem``."""
        return self._certificate

    @property
    def private_key(self) -> PrivateKeyTypes:
        return self._private_key

    def write(self, cert_path: StrPath, key_path: StrPath, *, overwrite: bool = False) -> None:
        """Write the certificate and the private key to two new files.

        The files are created with modes 0644 (certificate) and 0600 (key),
        less any bits the umask removes, so the key is not readable by others
        at any moment. Without ``overwrite``, an existing file raises
        ConfigError and nothing is written. With ``overwrite``, each file is
        replaced atomically through a temporary file in its directory.
        """
        cert_target, key_target = Path(cert_path), Path(key_path)
        if cert_target.resolve() == key_target.resolve():
            raise ConfigError(
                f"the certificate and the private key cannot share one file ({cert_target})"
            )
        if overwrite:
            _replace_files([(cert_target, self.cert_pem, 0o644), (key_target, self.key_pem, 0o600)])
            return

        for target, label in ((cert_target, "certificate file"), (key_target, "private key file")):
            if target.exists():
                raise ConfigError(
                    f"{label} {target} already exists; delete it or write with overwrite=True"
                )
        _create_file(cert_target, self.cert_pem, 0o644, "certificate file")
        try:
            _create_file(key_target, self.key_pem, 0o600, "private key file")
        except BaseException:
            cert_target.unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        subject = self._certificate.subject.rfc4514_string()
        not_after = self._certificate.not_valid_after_utc.isoformat()
        return f"CertificateBundle(subject={subject!r}, not_after={not_after!r}, key_pem=<hidden>)"


def _create_file(path: Path, data: bytes, mode: int, label: str) -> None:
    # O_EXCL makes the existence check and the creation one step, and the mode
    # applies from creation on.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(
            f"{label} {path} already exists; delete it or write with overwrite=True"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {label} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {label} {path}: {exc.strerror}") from None


def _replace_files(files: Sequence[tuple[Path, bytes, int]]) -> None:
    # Every temporary file is written before any target is replaced, so a
    # failed write changes none of the targets.
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data, mode in files:
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
            _create_file(temporary, data, mode, "temporary file")
            staged.append((temporary, target))
        for temporary, target in staged:
            try:
                os.replace(temporary, target)
            except OSError as exc:
                raise ConfigError(f"cannot replace {target}: {exc.strerror}") from None
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def _check_days(days: int) -> None:
    if days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {days}")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519 and Ed448 signatures take no separate hash algorithm.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _issuer_key(ca: CertificateBundle) -> CertificateIssuerPrivateKeyTypes:
    certificate = ca.certificate
    subject = certificate.subject.rfc4514_string()
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.value.ca:
        raise ConfigError(
            f"certificate {subject!r} is not a CA (basicConstraints CA:TRUE is missing); "
            "issue certificates from a CA made by create_ca"
        )
    key = ca.private_key
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigError(f"the key of CA {subject!r} cannot sign certificates")
    return key


def create_ca(common_name: str, *, days: int, now: datetime | None = None) -> CertificateBundle:
    """Create a self-signed CA with an ECDSA P-256 key, valid for ``days`` days.

    The CA can sign end-entity certificates only (path length 0).

    Example::

        ca = create_ca("hyok local CA", days=3650)
    """
    _check_days(days)
    issued_at = _now(now)
    try:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError:
        raise ConfigError(
            f"invalid CA common name {common_name!r}: use 1 to {_COMMON_NAME_MAX} characters"
        ) from None
    key = ec.generate_private_key(ec.SECP256R1())
    key_identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - _CLOCK_SKEW)
        .not_valid_after(issued_at + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(key_identifier, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_identifier),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return _bundle(certificate, key)


def _bundle(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertificateBundle:
    return CertificateBundle(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _subject_alternative_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hostnames, str):
        # A bare string would otherwise be read as one hostname per character.
        raise TypeError("hostnames must be a sequence of strings, not a string")
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            pass
        else:
            name: x509.GeneralName = x509.IPAddress(address)
            if name not in names:
                names.append(name)
            continue

        dns_name = hostname.lower()
        if len(dns_name) > 253 or not _DNS_NAME.fullmatch(dns_name):
            raise ConfigError(
                f"invalid hostname {hostname!r}: use an IP address or a DNS name of letters, "
                "digits, '-' and '.', with an optional leading '*.' (non-ASCII names "
                "in their 'xn--' form)"
            )
        name = x509.DNSName(dns_name)
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError(
            "a server certificate needs at least one hostname, for example 'localhost'"
        )
    return names


def _end_entity_validity(
    ca: x509.Certificate, days: int, issued_at: datetime
) -> tuple[datetime, datetime]:
    not_after = issued_at + timedelta(days=days)
    ca_not_after = ca.not_valid_after_utc
    if not_after > ca_not_after:
        days_left = int((ca_not_after - issued_at) / timedelta(days=1))
        subject = ca.subject.rfc4514_string()
        if days_left < 1:
            raise ConfigError(
                f"CA {subject!r} expires on {ca_not_after:%Y-%m-%d}, in less than a day; "
                "create a new CA"
            )
        raise ConfigError(
            f"a certificate valid for {days} days would outlive CA {subject!r}, which expires "
            f"on {ca_not_after:%Y-%m-%d}; use at most {days_left} days or create a new CA"
        )
    return issued_at - _CLOCK_SKEW, not_after


def _end_entity_builder(
    ca: CertificateBundle,
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    days: int,
    now: datetime | None,
) -> x509.CertificateBuilder:
    ca_certificate = ca.certificate
    not_before, not_after = _end_entity_validity(ca_certificate, days, _now(now))
    issuer_key_identifier = ca_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_identifier),
            critical=False,
        )
    )


def issue_server_certificate(
    ca: CertificateBundle,
    *,
    hostnames: Sequence[str],
    days: int,
    now: datetime | None = None,
) -> CertificateBundle:
    """Issue a TLS server certificate (serverAuth) with a new ECDSA P-256 key.

    Each hostname becomes a subjectAltName: an IP address (``127.0.0.1``,
    ``::1``) as an iPAddress, anything else as a lower-case dNSName
    (``localhost``). The subject is ``CN=<first hostname>`` when that fits in
    64 characters, and otherwise empty with a critical subjectAltName.
    The ``cert_pem`` of the result holds only the server certificate, not the CA.

    Example::

        server = issue_server_certificate(ca, hostnames=["localhost", "127.0.0.1", "::1"], days=365)
    """
    _check_days(days)
    issuer_key = _issuer_key(ca)
    alternative_names = _subject_alternative_names(hostnames)
    first = hostnames[0]
    if len(first) <= _COMMON_NAME_MAX:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first.lower())])
    else:
        subject = x509.Name([])

    key = ec.generate_private_key(ec.SECP256R1())
    builder = _end_entity_builder(
        ca, subject=subject, key=key, usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days, now=now
    )
    # RFC 5280 makes subjectAltName critical when the subject is empty.
    builder = builder.add_extension(
        x509.SubjectAlternativeName(alternative_names), critical=not subject
    )
    certificate = builder.sign(issuer_key, _signature_hash(issuer_key))
    return _bundle(certificate, key)


def issue_client_certificate(
    ca: CertificateBundle,
    *,
    subject: str,
    days: int,
    now: datetime | None = None,
) -> CertificateBundle:
    """Issue a TLS client certificate (clientAuth) for an RFC 4514 subject.

    Example::

        client = issue_client_certificate(ca, subject="CN=kms.hyok.internal,O=hyok", days=365)
    """
    _check_days(days)
    issuer_key = _issuer_key(ca)
    name = _parse_subject(subject)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _end_entity_builder(
        ca, subject=name, key=key, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=now
    )
    certificate = builder.sign(issuer_key, _signature_hash(issuer_key))
    return _bundle(certificate, key)


def certificate_days_left(cert_file: StrPath, *, now: datetime | None = None) -> float:
    """Return the days until the first certificate in ``cert_file`` expires.

    The result is negative once the certificate has expired.
    """
    path = Path(cert_file)
    certificate = _parse_certificates(
        _read_file(path, "certificate file"), f"certificate file {path}"
    )[0]
    return (certificate.not_valid_after_utc - _now(now)) / timedelta(days=1)


# ---------------------------------------------------------------------------
# Subject names


def _parse_subject(subject: str) -> x509.Name:
    try:
        name = x509.Name.from_rfc4514_string(subject, _LOWER_CASE_ATTRIBUTE_TYPES)
    except ValueError:
        raise ConfigError(
            f"invalid subject name {subject!r}: use RFC 4514 syntax such as "
            "'CN=kms.example.internal,O=Example', with attribute types CN, O, OU, C, ST, "
            "L, STREET, DC, UID or a dotted OID"
        ) from None
    if len(name) == 0:
        raise ConfigError(
            f"invalid subject name {subject!r}: it has no attributes; "
            "use for example 'CN=kms.example.internal'"
        )
    for attribute in name:
        # cryptography keeps a '#'-prefixed hex value as raw text with the BER
        # tag, so it could never equal a certificate's value.
        if isinstance(attribute.value, str) and _CONTROL_CHARACTERS.search(attribute.value):
            raise ConfigError(
                f"invalid subject name {subject!r}: an attribute value contains control "
                "characters; write values as text, not as '#' and hex"
            )
    return name


def _name_key(name: x509.Name) -> Counter[frozenset[tuple[str, str | bytes]]]:
    # A multiset of RDNs, each a set of (OID, value) pairs: RDN order and the
    # ASN.1 string type (UTF8String or PrintableString) do not matter, values do.
    return Counter(
        frozenset((attribute.oid.dotted_string, attribute.value) for attribute in rdn)
        for rdn in name.rdns
    )


def certificate_subject(der_certificate: bytes) -> str:
    """Return a DER certificate's subject as an RFC 4514 string that is safe to log.

    Control characters are escaped as ``\\XX`` hex pairs. A certificate that
    cannot be parsed gives ``"<unparsable certificate>"``.
    """
    try:
        certificate = x509.load_der_x509_certificate(der_certificate)
    except ValueError:
        return "<unparsable certificate>"
    text = certificate.subject.rfc4514_string()
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\{ord(match.group()):02X}", text)


class SubjectAllowList:
    """The client certificate subjects that mutual TLS accepts.

    A certificate is allowed when its subject has exactly the attributes of one
    configured name: no attribute more, none fewer. Matching ignores the order
    of the RDNs and the ASN.1 string type, and compares attribute values
    exactly, case and spaces included, so ``CN=KMS`` does not allow ``CN=kms``.
    Attribute type names in the configured strings may be upper or lower case
    (``CN`` or ``cn``).
    """

    __slots__ = ("_keys", "_subjects")

    def __init__(self, subjects: Sequence[str]) -> None:
        if isinstance(subjects, str):
            raise TypeError("subjects must be a sequence of strings, not a string")
        if not subjects:
            raise ConfigError(
                "the client subject allow-list is empty; add at least one subject name "
                "such as 'CN=kms.example.internal'"
            )
        names = [_parse_subject(subject) for subject in subjects]
        self._subjects = tuple(name.rfc4514_string() for name in names)
        self._keys = [_name_key(name) for name in names]

    @property
    def subjects(self) -> tuple[str, ...]:
        """The allowed subjects, as RFC 4514 strings in cryptography's spelling."""
        return self._subjects

    def allows(self, der_certificate: bytes) -> bool:
        """Return whether the subject of a DER certificate is on the list.

        A certificate that cannot be parsed is not allowed.
        """
        try:
            certificate = x509.load_der_x509_certificate(der_certificate)
        except ValueError:
            return False
        key = _name_key(certificate.subject)
        return any(key == allowed for allowed in self._keys)

    def __repr__(self) -> str:
        return f"SubjectAllowList({list(self._subjects)!r})"


# ---------------------------------------------------------------------------
# SSL contexts


def _load_chain(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> PrivateKeyTypes:
    # The checks with cryptography come first because their messages name the
    # file at fault, which OpenSSL's errors do not.
    _, private_key = _load_pair(
        _read_file(cert_path, "certificate file"),
        _read_file(key_path, "private key file"),
        f"certificate file {cert_path}",
        f"private key file {key_path}",
    )
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"OpenSSL cannot use certificate file {cert_path} with private key file "
            f"{key_path}: {exc.reason or exc.strerror}"
        ) from None
    return private_key


def _load_trust(context: ssl.SSLContext, ca_path: Path, label: str) -> None:
    _parse_certificates(_read_file(ca_path, label), f"{label} {ca_path}")
    try:
        context.load_verify_locations(cafile=ca_path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"OpenSSL cannot use {label} {ca_path}: {exc.reason or exc.strerror}"
        ) from None


def server_ssl_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    min_version: Literal["1.2", "1.3"] = "1.2",
    client_ca_file: StrPath | None = None,
) -> ssl.SSLContext:
    """Build the server context of an XKS listener.

    TLS 1.2 offers only :data:`TLS12_CIPHERS` and TLS 1.3 OpenSSL's default
    suites. The server's cipher order wins, ALPN offers ``http/1.1``, and TLS
    compression and renegotiation are off. With ``client_ca_file``, a client
    must present a certificate that chains to a certificate in that file. The
    system's trusted roots are not loaded, so the file must contain the root CA
    (and any intermediate CAs) of the client certificates. Subject names are
    checked after the handshake by :mod:`hyok.xki.tls_guard`.

    Raises ConfigError naming the file when a file is missing, unreadable or
    not PEM, or when the key does not match the certificate.

    NOTE: served by asyncio (CPython 3.11) or uvloop (0.23), a failed handshake
    ends with a closed connection and no TLS alert, because both close the
    transport without sending the alert that OpenSSL wrote.
    """
    if min_version not in _TLS_VERSIONS:
        raise ConfigError(f"invalid minimum TLS version {min_version!r}; use '1.2' or '1.3'")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[min_version]
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    )
    context.set_alpn_protocols(["http/1.1"])
    private_key = _load_chain(context, Path(cert_file), Path(key_file))
    if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(
            f"private key file {key_file} contains a {type(private_key).__name__}; "
            "the XKS cipher suites need an ECDSA or RSA key"
        )

    if client_ca_file is not None:
        _load_trust(context, Path(client_ca_file), "client CA file")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(
    ca_file: StrPath,
    *,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
) -> ssl.SSLContext:
    """Build a client context that trusts only the CAs in ``ca_file``.

    It checks the server's hostname, requires TLS 1.2 or later and offers ALPN
    ``http/1.1``. ``cert_file`` and ``key_file`` add a client certificate for
    mutual TLS, and must be given together.
    """
    if (cert_file is None) != (key_file is None):
        raise ConfigError("a client certificate needs both cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    _load_trust(context, Path(ca_file), "CA file")
    if cert_file is not None and key_file is not None:
        _load_chain(context, Path(cert_file), Path(key_file))
    return context
