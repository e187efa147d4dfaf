"""AWS Signature Version 4 (SigV4): request verification for the XKS proxy, signing for clients.

The XKS proxy API v1 authenticates every request with SigV4 under the service
name ``kms-xks-proxy``. :class:`SigV4Verifier` checks the ``Authorization``
header of a request as an ASGI server delivers it, and :func:`sign` computes
the headers a client adds.

Both sides build the canonical request by the SigV4 rules for services other
than Amazon S3:

- the canonical URI is the path as sent, with ``.`` and ``..`` segments and
  empty segments removed, and each segment percent-encoded again, so ``%20``
  on the wire becomes ``%2520``. Letters, digits, ``-``, ``.``, ``_`` and
  ``~`` are never encoded. botocore 1.44 computes the same form;
- the canonical query string decodes each name and value, percent-encodes them
  again and sorts the pairs;
- header values are trimmed and inner whitespace runs are collapsed to one
  space, and repeated headers are joined with commas;
- the payload hash is the hex SHA-256 of the body. An
  ``x-amz-content-sha256`` header must carry that same value, and
  ``UNSIGNED-PAYLOAD`` is rejected.

NOTE: curl 7.88.1 (``--aws-sigv4``) signs the path and the query string
exactly as sent, without re-encoding or sorting. Its requests verify when
the path needs no percent-encoding and the query string is empty, which holds
for every XKS API request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlsplit

from hyok.common.errors import AuthenticationFailedError
from hyok.common.secrets import Secret

__all__ = [
    "ALGORITHM",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_SERVICE",
    "Credential",
    "CredentialLookup",
    "SigV4Verifier",
    "sign",
]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
DEFAULT_SERVICE: Final = "kms-xks-proxy"
DEFAULT_MAX_SKEW: Final = timedelta(minutes=5)

_TERMINATOR: Final = "aws4_request"
_UNSIGNED_PAYLOAD: Final = b"UNSIGNED-PAYLOAD"
_AMZ_DATE_FORMAT: Final = "YYYYMMDD'T'HHMMSS'Z'"

_AMZ_DATE: Final = re.compile(rb"[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE: Final = re.compile(r"[0-9]{8}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
# Header names are RFC 9110 tokens, in lower case as SigV4 requires.
_SIGNED_HEADERS: Final = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+(?:;[a-z0-9!#$%&'*+.^_`|~-]+)*")
# A path made only of unreserved characters, without empty, "." or ".."
# segments, is its own canonical URI, so the common case skips re-encoding.
_PLAIN_PATH: Final = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9._~-]+)*/?")


@dataclass(frozen=True)
class Credential:
    """An access key ID and its secret access key; the repr masks the secret."""

    access_key_id: str
    secret: Secret


CredentialLookup = Callable[[str], Credential | None]
"""A function from access key ID to its credential, returning None for an unknown ID."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SigV4Verifier:
    """Verify SigV4-signed requests against a set of credentials that may change.

    ``credentials`` is a function from access key ID to :class:`Credential`
    (or None), or a mapping. It is consulted on every request, so a rotation
    takes effect on the next request: pass a function that reads the current
    set, or mutate the mapping in place.

    Derived signing keys are cached per access key ID, ``Secret`` object,
    scope date, region and service, at most ``cache_size`` of them. A lookup
    that returns the same ``Secret`` object between calls lets a request
    cost two SHA-256 digests and one HMAC. A new ``Secret`` object, even with
    the same value, derives a new key.

    Example::

        verifier = SigV4Verifier({"AKID": Credential("AKID", Secret("...."))}, "cn-hangzhou")
        credential = verifier.verify(
            scope["method"], scope["raw_path"].decode("ascii"), scope["query_string"],
            scope["headers"], body,
        )
    """

    def __init__(
        self,
        credentials: CredentialLookup | Mapping[str, Credential],
        region: str,
        service: str = DEFAULT_SERVICE,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        clock: Callable[[], datetime] = _utc_now,
        *,
        cache_size: int = 128,
    ) -> None:
        _check_scope_part("region", region)
        _check_scope_part("service", service)
        if max_skew <= timedelta(0):
            raise ValueError(f"max_skew must be positive, got {max_skew}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")

        self._lookup: CredentialLookup = (
            credentials.get if isinstance(credentials, Mapping) else credentials
        )
        self.region = region
        self.service = service
        self.max_skew = max_skew
        self._clock = clock
        self._keys = _SigningKeyCache(cache_size)

    def __repr__(self) -> str:
        return (
            f"SigV4Verifier(region={self.region!r}, service={self.service!r}, "
            f"max_skew={self.max_skew!r})"
        )

    def clear_key_cache(self) -> None:
        """Drop every cached signing key, and with them the references to retired secrets.

        Call it after a credential rotation. Cached keys otherwise stay until
        newer entries evict them, and each keeps its ``Secret`` in memory.
        """
        self._keys.clear()

    def verify(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> Credential:
        """Check the SigV4 signature of one request and return the credential that signed it.

        ``path`` is the path as received, before percent-decoding: ASGI's
        ``raw_path`` decoded as ASCII. ASGI's decoded ``path`` gives the same
        result only when the path contains no ``%``. ``query_string`` and
        ``headers`` are the ASGI values: raw bytes, lower-case names,
        repeated names allowed.

        Raises AuthenticationFailedError with a message naming the check that
        failed and the fix. The message may contain the access key ID, but
        never the secret or the expected signature.
        """
        fields: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)

        authorization = _parse_authorization(fields.get(b"authorization"))
        self._check_scope(authorization)
        amz_date = _single_header(fields, b"x-amz-date", "X-Amz-Date")
        request_time = _parse_amz_date(amz_date)
        if authorization.date != amz_date[:8].decode("ascii"):
            raise AuthenticationFailedError(
                f"credential scope date {authorization.date} does not match the X-Amz-Date "
                f"date {amz_date[:8].decode('ascii')}: sign with the date of the X-Amz-Date "
                "header in the credential scope"
            )
        self._check_time(request_time, amz_date)
        canonical_headers = _canonical_headers(fields, authorization.signed_headers)
        payload_hash = _payload_hash(fields, body)

        credential = self._lookup(authorization.access_key_id)
        if credential is None:
            raise AuthenticationFailedError(
                f"unknown access key ID {_shown(authorization.access_key_id)}: sign with an "
                "access key ID configured on this proxy"
            )

        canonical_request = b"\n".join(
            (
                method.encode("ascii"),
                _canonical_uri(path),
                _canonical_query(query_string),
                canonical_headers,
                authorization.signed_headers.encode("ascii"),
                payload_hash,
            )
        )
        signing_key = self._keys.get(credential, authorization.date, self.region, self.service)
        expected = _signature(signing_key, amz_date, authorization.scope, canonical_request)
        if not hmac.compare_digest(expected, authorization.signature):
            raise AuthenticationFailedError(
                f"signature mismatch for access key ID {_shown(authorization.access_key_id)}: "
                "check the secret access key, and that the method, path, query string, signed "
                "headers and body sent are those that were signed"
            )
        return credential

    def _check_scope(self, authorization: _Authorization) -> None:
        if authorization.terminator != _TERMINATOR:
            raise AuthenticationFailedError(
                f"credential scope ends in {_shown(authorization.terminator)}, not "
                f"{_TERMINATOR!r}: end the scope with {_TERMINATOR!r}"
            )
        if authorization.service != self.service:
            raise AuthenticationFailedError(
                f"credential scope service {_shown(authorization.service)} does not match the "
                f"service of this proxy: sign with service {self.service!r}"
            )
        if authorization.region != self.region:
            raise AuthenticationFailedError(
                f"credential scope region {_shown(authorization.region)} does not match the "
                f"region of this proxy: sign with region {self.region!r}"
            )

    def _check_time(self, request_time: datetime, amz_date: bytes) -> None:
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("the verifier clock must return a timezone-aware datetime")
        skew = (request_time - now).total_seconds()
        if abs(skew) <= self.max_skew.total_seconds():
            return
        direction = "before" if skew < 0 else "after"
        raise AuthenticationFailedError(
            f"request time {amz_date.decode('ascii')} is {math.ceil(abs(skew))} seconds "
            f"{direction} the server time, more than the {self.max_skew.total_seconds():.0f} "
            "seconds allowed: check that the client and server clocks are synchronized"
        )


@dataclass(frozen=True, slots=True)
class _Authorization:
    """The parsed parts of an ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: str
    signature: str

    @property
    def scope(self) -> bytes:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}".encode("ascii")


def _parse_authorization(values: list[bytes] | None) -> _Authorization:
    if not values:
        raise AuthenticationFailedError(
            "missing Authorization header: sign the request with AWS Signature Version 4 "
            f"({ALGORITHM})"
        )
    if len(values) > 1:
        raise AuthenticationFailedError(f"{len(values)} Authorization headers: send exactly one")
    try:
        header = values[0].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailedError(
            "malformed Authorization header: it contains non-ASCII bytes"
        ) from None

    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthenticationFailedError(
            f"unsupported Authorization algorithm {_shown(algorithm)}: sign with AWS "
            f"Signature Version 4 ({ALGORITHM})"
        )

    if not rest.strip():
        raise AuthenticationFailedError(
            f"malformed Authorization header: nothing follows {ALGORITHM}, expected "
            "Credential=..., SignedHeaders=... and Signature=... after it"
        )
    parts = _authorization_parts(rest)
    access_key_id, date, region, service, terminator = _credential_scope(parts["Credential"])

    signed_headers = parts["SignedHeaders"]
    if not _SIGNED_HEADERS.fullmatch(signed_headers):
        raise AuthenticationFailedError(
            f"malformed SignedHeaders {_shown(signed_headers)} in the Authorization header: "
            "list lower-case header names separated by ';'"
        )
    names = signed_headers.split(";")
    if names != sorted(set(names)):
        raise AuthenticationFailedError(
            f"malformed SignedHeaders {_shown(signed_headers)} in the Authorization header: "
            "list each header name once, in sorted order"
        )

    signature = parts["Signature"]
    if not _SIGNATURE.fullmatch(signature):
        raise AuthenticationFailedError(
            "malformed Signature in the Authorization header: expected 64 lower-case hex digits"
        )

    return _Authorization(
        access_key_id, date, region, service, terminator, signed_headers, signature
    )


def _authorization_parts(rest: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if name not in ("Credential", "SignedHeaders", "Signature") or not equals:
            raise AuthenticationFailedError(
                f"malformed Authorization header: unexpected part {_shown(part.strip())}, "
                "expected Credential=..., SignedHeaders=... and Signature=... separated by commas"
            )
        if name in parts:
            raise AuthenticationFailedError(
                f"malformed Authorization header: {name} appears twice, send it once"
            )
        parts[name] = value
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in parts:
            raise AuthenticationFailedError(f"malformed Authorization header: {name} is missing")
    return parts


def _credential_scope(credential: str) -> tuple[str, str, str, str, str]:
    scope = credential.split("/")
    if len(scope) != 5 or not scope[0]:
        raise AuthenticationFailedError(
            "malformed Credential in the Authorization header: expected "
            f"<access key ID>/<YYYYMMDD>/<region>/<service>/{_TERMINATOR}"
        )
    access_key_id, date, region, service, terminator = scope
    if not _SCOPE_DATE.fullmatch(date):
        raise AuthenticationFailedError(
            f"malformed Credential in the Authorization header: scope date {_shown(date)} "
            "is not YYYYMMDD"
        )
    return access_key_id, date, region, service, terminator


def _single_header(fields: Mapping[bytes, list[bytes]], name: bytes, shown_name: str) -> bytes:
    values = fields.get(name)
    if not values:
        raise AuthenticationFailedError(
            f"missing {shown_name} header: send the signing time as {_AMZ_DATE_FORMAT} in UTC"
        )
    if len(values) > 1:
        raise AuthenticationFailedError(f"{len(values)} {shown_name} headers: send exactly one")
    return values[0]


def _parse_amz_date(value: bytes) -> datetime:
    if _AMZ_DATE.fullmatch(value):
        try:
            return datetime(
                int(value[0:4]),
                int(value[4:6]),
                int(value[6:8]),
                int(value[9:11]),
                int(value[11:13]),
                int(value[13:15]),
                tzinfo=UTC,
            )
        except ValueError:
            pass
    raise AuthenticationFailedError(
        f"malformed X-Amz-Date {_shown(value.decode('ascii', 'replace'))}: send the signing "
        f"time as {_AMZ_DATE_FORMAT} in UTC, for example 20240131T235959Z"
    )


def _canonical_headers(fields: Mapping[bytes, list[bytes]], signed_headers: str) -> bytes:
    """Build the canonical headers block, ending in a blank line as the canonical request needs."""
    names = signed_headers.split(";")
    for required in ("host", "x-amz-date"):
        if required not in names:
            raise AuthenticationFailedError(
                f"SignedHeaders {_shown(signed_headers)} does not include {required!r}: "
                "sign the host and x-amz-date headers"
            )

    lines = []
    for name in names:
        raw_name = name.encode("ascii")
        values = fields.get(raw_name)
        if values is None:
            raise AuthenticationFailedError(
                f"signed header {name!r} is missing from the request: send every header "
                "listed in SignedHeaders"
            )
        value = b",".join([b" ".join(v.split()) for v in values])
        lines.append(raw_name + b":" + value + b"\n")
    return b"".join(lines)


def _payload_hash(fields: Mapping[bytes, list[bytes]], body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest().encode("ascii")
    declared = fields.get(b"x-amz-content-sha256")
    if declared is None:
        return digest
    if declared == [_UNSIGNED_PAYLOAD]:
        raise AuthenticationFailedError(
            "x-amz-content-sha256 is UNSIGNED-PAYLOAD, but this proxy requires a signed body: "
            "sign the hex SHA-256 of the request body"
        )
    if declared != [digest]:
        raise AuthenticationFailedError(
            "x-amz-content-sha256 does not match the SHA-256 of the request body: send the "
            "lower-case hex SHA-256 of the exact body bytes, once"
        )
    return digest


def _canonical_uri(path: str) -> bytes:
    """Return the canonical URI of a path as sent, by the SigV4 rules for non-S3 services."""
    if path and _PLAIN_PATH.fullmatch(path):
        return path.encode("ascii")

    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(quote(segment, safe=""))
    uri = "/" + "/".join(segments)
    if segments and path.endswith("/"):
        uri += "/"
    return uri.encode("ascii")


def _canonical_query(query: bytes) -> bytes:
    if not query:
        return b""
    pairs: list[tuple[bytes, bytes]] = []
    for item in query.split(b"&"):
        if not item:
            continue
        name, _, value = item.partition(b"=")
        pairs.append((_encode_component(name), _encode_component(value)))
    pairs.sort()
    return b"&".join([name + b"=" + value for name, value in pairs])


def _encode_component(raw: bytes) -> bytes:
    # '+' stays a literal plus: SigV4 follows RFC 3986, not HTML form encoding.
    return quote_from_bytes(unquote_to_bytes(raw), safe="").encode("ascii")


def _signature(signing_key: bytes, amz_date: bytes, scope: bytes, canonical_request: bytes) -> str:
    string_to_sign = b"\n".join(
        (
            ALGORITHM.encode("ascii"),
            amz_date,
            scope,
            hashlib.sha256(canonical_request).hexdigest().encode("ascii"),
        )
    )
    return hmac.digest(signing_key, string_to_sign, "sha256").hex()


def _derive_signing_key(secret: Secret, date: str, region: str, service: str) -> bytes:
    key = hmac.digest(b"AWS4" + secret.reveal_bytes(), date.encode("ascii"), "sha256")
    key = hmac.digest(key, region.encode("utf-8"), "sha256")
    key = hmac.digest(key, service.encode("utf-8"), "sha256")
    return hmac.digest(key, _TERMINATOR.encode("ascii"), "sha256")


# Access key ID, id() of the Secret object, scope date, region, service.
_CacheKey = tuple[str, int, str, str, str]


class _SigningKeyCache:
    """Derived signing keys, least recently used first, bounded to ``max_entries``.

    Entries are keyed by the ``id`` of the ``Secret`` object and keep a
    reference to it. An id cannot be reused while its entry lives, so a rotated
    secret never matches a key derived from the old one.
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[_CacheKey, tuple[Secret, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_SigningKeyCache(entries={len(self._entries)}, max_entries={self._max_entries})"

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, credential: Credential, date: str, region: str, service: str) -> bytes:
        secret = credential.secret
        cache_key = (credential.access_key_id, id(secret), date, region, service)
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None and entry[0] is secret:
                self._entries.move_to_end(cache_key)
                return entry[1]

        signing_key = _derive_signing_key(secret, date, region, service)
        with self._lock:
            self._entries[cache_key] = (secret, signing_key)
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return signing_key


# Keys that sign() derived, so that a client signing many requests a day
# derives each key once.
_SIGNING_KEYS: Final = _SigningKeyCache(256)


def _check_scope_part(name: str, value: str) -> None:
    if not value or "/" in value or value != value.strip() or not value.isascii():
        raise ValueError(
            f"{name} {value!r} cannot be part of a SigV4 credential scope: use a non-empty "
            "ASCII value without '/' or surrounding spaces"
        )


def _shown(value: str) -> str:
    """Quote a value taken from a request for an error message: printable ASCII, at most 64."""
    cut = value[:64] + ("..." if len(value) > 64 else "")
    return repr("".join(c if " " <= c <= "~" else "?" for c in cut))


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credential: Credential,
    *,
    region: str,
    service: str = DEFAULT_SERVICE,
    now: datetime,
) -> dict[str, str]:
    """Sign a request with SigV4 and return the headers to add to it.

    The result contains ``Authorization``, ``X-Amz-Date`` and, when ``headers``
    has no ``Host``, a ``Host`` derived from ``url`` (the default port
    omitted). The signature covers ``host``, ``x-amz-date``, ``content-type``
    when ``headers`` has one, and the SHA-256 of ``body``. The other entries
    of ``headers`` are not signed. ``now`` must be timezone-aware.

    Example::

        added = sign("POST", "https://xks.example.com/kms/xks/v1/keys/k1/encrypt",
                     {"Content-Type": "application/json"}, body, credential,
                     region="cn-hangzhou", now=datetime.now(UTC))
    """
    _check_scope_part("region", region)
    _check_scope_part("service", service)
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime, for example datetime.now(UTC)")
    request_headers = {name.lower(): value for name, value in headers.items()}
    for reserved in ("authorization", "x-amz-date"):
        if reserved in request_headers:
            raise ValueError(f"headers already contain {reserved!r}, which sign() sets")

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an absolute http or https URL, got {url!r}")
    added: dict[str, str] = {}
    host = request_headers.get("host")
    if host is None:
        host = _host_from_url(parts.scheme, parts.hostname, parts.port)
        added["Host"] = host

    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {"host": host, "x-amz-date": amz_date}
    if "content-type" in request_headers:
        signed["content-type"] = request_headers["content-type"]
    names = sorted(signed)
    signed_headers = ";".join(names)
    canonical_headers = "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names)

    canonical_request = b"\n".join(
        (
            method.encode("ascii"),
            _canonical_uri(parts.path),
            _canonical_query(parts.query.encode("utf-8")),
            canonical_headers.encode("utf-8"),
            signed_headers.encode("ascii"),
            hashlib.sha256(body).hexdigest().encode("ascii"),
        )
    )
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{_TERMINATOR}"
    signing_key = _SIGNING_KEYS.get(credential, date, region, service)
    signature = _signature(
        signing_key, amz_date.encode("ascii"), scope.encode("utf-8"), canonical_request
    )

    added["X-Amz-Date"] = amz_date
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credential.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added


def _host_from_url(scheme: str, hostname: str, port: int | None) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname
    default_port = 443 if scheme == "https" else 80
    if port is not None and port != default_port:
        host = f"{host}:{port}"
    return host
