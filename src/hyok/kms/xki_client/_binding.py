"""The connection settings of one XKI proxy (:class:`ProxyBinding`) and their validation."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from hyok.common.secrets import Secret
from hyok.kms.xki_client._text import _shown

_URI_PATH_SUFFIX: Final = "/kms/xks/v1"
_URI_PATH: Final = re.compile(r"[A-Za-z0-9/_-]{1,128}")
_REGION: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
# The rules of AWS KMS for XKS proxy credentials (XksProxyAuthenticationCredentialType).
_ACCESS_KEY_ID: Final = re.compile(r"[A-Z2-7]{20,30}")
_SECRET_ACCESS_KEY: Final = re.compile(r"[A-Za-z0-9/+=]{43,64}")
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_FINGERPRINT: Final = re.compile(r"[0-9a-f]{64}")


@enum.unique
class Connectivity(enum.StrEnum):
    """Network path from the KMS to the proxy."""

    PUBLIC = "public"
    """A public endpoint: an https URL with a DNS name, reached through DNS."""
    VPC = "vpc"
    """A VPC endpoint service: the client dials ``connect_address`` when one is set."""


class ProxyBindingError(ValueError):
    """A :class:`ProxyBinding` value is invalid. ``field`` names the parameter."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _parse_dns_name(field_name: str, text: str, host: str) -> str:
    name = host.lower()
    labels = name.split(".")
    if (
        not name.isascii()
        or len(name) > 253
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
    ):
        raise ProxyBindingError(
            field_name,
            f"{field_name} {_shown(text)} does not have a valid DNS name as its host: use "
            "letters, digits and '-' in dot-separated labels, and write an internationalized "
            "name in its ASCII (xn--) form",
        )
    if labels[-1].isdigit():
        raise ProxyBindingError(
            field_name,
            f"{field_name} {_shown(text)} has a numeric address as its host: use the DNS name "
            "that the proxy's TLS certificate names",
        )
    return name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    if not isinstance(endpoint, str):
        raise ProxyBindingError("endpoint", "endpoint must be a string such as 'https://xks.example.com'")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ProxyBindingError(
            "endpoint", f"endpoint {_shown(endpoint)} is not a valid URL: write https://host[:port]"
        ) from None
    if parts.scheme != "https":
        raise ProxyBindingError(
            "endpoint",
            f"endpoint {_shown(endpoint)} must use https: write https://host[:port]",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ProxyBindingError(
            "endpoint",
            f"endpoint {_shown(endpoint)} must be only https://host[:port]: put the path in "
            "uri_path, and leave out user information, query and fragment",
        )
    host = parts.hostname
    if not host:
        raise ProxyBindingError("endpoint", f"endpoint {_shown(endpoint)} has no host")
    if _is_ip_literal(host):
        raise ProxyBindingError(
            "endpoint",
            f"endpoint {_shown(endpoint)} has an IP address as its host: use the DNS name that "
            "the proxy's TLS certificate names; for a private address, use connectivity 'vpc' "
            "with connect_address",
        )
    return _parse_dns_name("endpoint", endpoint, host), port if port is not None else 443


def _parse_connect_address(address: str, default_port: int) -> tuple[str, int]:
    if not isinstance(address, str) or not address:
        raise ProxyBindingError(
            "connect_address", "connect_address must be a string such as '10.0.0.5:443'"
        )
    try:
        parts = urlsplit("//" + address)
        port = parts.port
    except ValueError:
        raise ProxyBindingError(
            "connect_address",
            f"connect_address {_shown(address)} is invalid: write host:port, with an IPv6 "
            "address in brackets, for example '[fd00::5]:443'",
        ) from None
    host = parts.hostname
    if not host or parts.path or parts.query or parts.fragment or parts.username:
        raise ProxyBindingError(
            "connect_address",
            f"connect_address {_shown(address)} is invalid: write host:port, for example "
            "'10.0.0.5:443'",
        )
    if not _is_ip_literal(host):
        host = _parse_dns_name("connect_address", address, host)
    return host, port if port is not None else default_port


def _parse_fingerprint(value: str) -> bytes:
    text = value.strip().lower().replace(":", "") if isinstance(value, str) else ""
    if not _FINGERPRINT.fullmatch(text):
        raise ProxyBindingError(
            "server_certificate_sha256",
            f"server_certificate_sha256 {_shown(value)} is not a SHA-256 fingerprint: give 64 "
            "hex digits, with or without ':' between bytes",
        )
    return bytes.fromhex(text)


def _check_uri_path(uri_path: str) -> None:
    if not isinstance(uri_path, str) or not _URI_PATH.fullmatch(uri_path):
        raise ProxyBindingError(
            "uri_path",
            f"uri_path {_shown(uri_path)} is invalid: use at most 128 letters, digits, '/', "
            "'-' and '_'",
        )
    if not uri_path.startswith("/") or not uri_path.endswith(_URI_PATH_SUFFIX):
        raise ProxyBindingError(
            "uri_path",
            f"uri_path {_shown(uri_path)} is invalid: it must be an optional prefix that starts "
            f"with '/', followed by {_URI_PATH_SUFFIX}, for example '/tenant-1{_URI_PATH_SUFFIX}'",
        )


@dataclass(frozen=True)
class ProxyBinding:
    """The connection settings of one XKI proxy, as an external key instance stores them.

    ``endpoint`` is ``https://host[:port]`` with a DNS name, and TLS verifies
    the proxy's certificate against that name. ``ca_file`` (PEM) replaces the
    system's trusted roots. ``server_certificate_sha256`` pins the proxy's leaf
    certificate in addition to that verification. ``connect_address``
    (``host:port``, only with connectivity ``vpc``) is where the client dials,
    while SNI, the Host header and hostname verification keep the endpoint's
    name. The repr masks the secret.

    Raises ProxyBindingError naming the field, the bad value and the fix.
    """

    endpoint: str
    uri_path: str
    region: str
    access_key_id: str
    secret: Secret
    connectivity: Connectivity = Connectivity.PUBLIC
    ca_file: Path | None = None
    server_certificate_sha256: str | None = None
    connect_address: str | None = None

    host: str = field(init=False, repr=False, compare=False)
    """The endpoint's DNS name, in lower case."""
    port: int = field(init=False, repr=False, compare=False)
    """The endpoint's port, 443 unless the endpoint names another."""
    pinned_sha256: bytes | None = field(init=False, repr=False, compare=False)
    """The pinned fingerprint as 32 bytes, or None."""

    def __post_init__(self) -> None:
        try:
            connectivity = Connectivity(self.connectivity)
        except ValueError:
            raise ProxyBindingError(
                "connectivity",
                f"connectivity {_shown(self.connectivity)} is invalid: use 'public' or 'vpc'",
            ) from None
        object.__setattr__(self, "connectivity", connectivity)

        host, port = _parse_endpoint(self.endpoint)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        _check_uri_path(self.uri_path)

        if not isinstance(self.region, str) or not _REGION.fullmatch(self.region):
            raise ProxyBindingError(
                "region",
                f"region {_shown(self.region)} is invalid: use the region of the proxy's "
                "credential scope, such as 'cn-hangzhou' (letters, digits and '-')",
            )
        if not isinstance(self.access_key_id, str) or not _ACCESS_KEY_ID.fullmatch(
            self.access_key_id
        ):
            raise ProxyBindingError(
                "access_key_id",
                f"access_key_id {_shown(self.access_key_id)} is invalid: it must have 20 to 30 "
                "characters from A-Z and 2-7, as the proxy issued it",
            )
        self._check_secret()

        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", Path(self.ca_file))
        pinned = (
            _parse_fingerprint(self.server_certificate_sha256)
            if self.server_certificate_sha256 is not None
            else None
        )
        object.__setattr__(self, "pinned_sha256", pinned)
        if pinned is not None:
            object.__setattr__(self, "server_certificate_sha256", pinned.hex())

        if self.connect_address is not None:
            if connectivity is not Connectivity.VPC:
                raise ProxyBindingError(
                    "connect_address",
                    f"connect_address {_shown(self.connect_address)} is set but connectivity "
                    "is 'public': a public endpoint is reached through DNS, so use "
                    "connectivity 'vpc' or remove connect_address",
                )
            _parse_connect_address(self.connect_address, port)

    def _check_secret(self) -> None:
        if not isinstance(self.secret, Secret):
            raise ProxyBindingError(
                "secret", "secret must be a hyok.common.secrets.Secret, not a plain value"
            )
        length = len(self.secret.reveal())
        if not _SECRET_ACCESS_KEY.fullmatch(self.secret.reveal()):
            raise ProxyBindingError(
                "secret",
                f"the secret access key has {length} characters and must have 43 to 64 "
                "characters from letters, digits, '/', '+' and '='",
            )

    @property
    def authority(self) -> str:
        """The Host header value: the endpoint's name, and its port unless it is 443."""
        return self.host if self.port == 443 else f"{self.host}:{self.port}"

    @property
    def dial_address(self) -> tuple[str, int]:
        """The host and port that the client connects to."""
        if self.connect_address is None:
            return self.host, self.port
        return _parse_connect_address(self.connect_address, self.port)
