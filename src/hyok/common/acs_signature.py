"""Alibaba Cloud API request signatures: verification of KMS OpenAPI 2016-01-20 requests.

The Alibaba Cloud SDKs sign a request in one of two ways, and
:class:`AcsVerifier` accepts both:

- ``ACS3-HMAC-SHA256``, the default of ``alibabacloud-kms20160120`` 3.3.1 on
  ``alibabacloud-tea-openapi`` 0.4.6. An ``Authorization`` header carries the
  access key ID, the names of the signed headers and the lower-case hex
  HMAC-SHA256 of ``"ACS3-HMAC-SHA256\\n" + hex(SHA-256(canonical request))``.
  The canonical request contains the method, the percent-decoded path, every
  query parameter, the signed headers and the SHA-256 of the body.
- the V1 RPC signature (HMAC-SHA1), used by ``aliyun-python-sdk-core`` 2.16
  and by the current SDK with ``Config(signature_algorithm="v2")``. The
  ``Signature`` query parameter is the Base64 HMAC-SHA1, under the key
  ``secret + "&"``, of ``METHOD&%2F&`` followed by the percent-encoded, sorted
  query and form-body parameters. It signs no header, and no body other
  than form parameters.

Both schemes rebuild their canonical forms from the decoded parameters:
``+`` decodes to a space, and names and values are percent-encoded again by
RFC 3986, keeping only ``A-Z a-z 0-9 - _ . ~``. Header values in the
canonical request are read as ISO-8859-1 and encoded as UTF-8, which is what
the Python SDK signs when its HTTP client sends a non-ASCII header value.

Every request must carry a time within ``max_skew`` of the server clock and a
nonce that its access key ID has not used within that window. Failures raise
:class:`SignatureError` with an Alibaba Cloud error code. For signature and
credential failures these are the codes of the Alibaba Cloud API gateway, as
third-party clients observed them, because the KMS documentation lists only a
few. A message names the check that failed and the fix, and never contains
the secret or the expected signature.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import heapq
import hmac
import math
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum, unique
from typing import Any, Final
from urllib.parse import quote, unquote_plus, unquote_to_bytes

from hyok.common.acs_signer import ACS3_ALGORITHM
from hyok.common.acs_signer import FORM_MEDIA_TYPE as _FORM_MEDIA_TYPE
from hyok.common.errors import RequestError
from hyok.common.secrets import Secret

__all__ = [
    "ACS3_ALGORITHM",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_NONCE_CACHE_ENTRIES",
    "V1_SIGNATURE_METHOD",
    "V1_SIGNATURE_VERSION",
    "AcsCredential",
    "AcsRequest",
    "AcsVerifier",
    "CredentialLookup",
    "InMemoryNonceCache",
    "NonceCache",
    "SignatureError",
    "SignatureErrorCode",
    "SignatureScheme",
    "VerifiedCaller",
]

V1_SIGNATURE_METHOD: Final = "HMAC-SHA1"
V1_SIGNATURE_VERSION: Final = "1.0"
DEFAULT_MAX_SKEW: Final = timedelta(minutes=15)

_TIME_FORMAT: Final = "YYYY-MM-DDThh:mm:ssZ in UTC, for example 2024-01-31T23:59:59Z"

# Headers that ACS3 requests must sign, and headers that must be signed when sent.
_REQUIRED_SIGNED: Final = (
    "host",
    "x-acs-action",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)
_SIGNED_WHEN_SENT: Final = ("content-type", "x-acs-accesskey-id", "x-acs-security-token")

# V1 parameters that carry the signature itself rather than the API call. The
# verifier removes them, with Action and Version, from VerifiedCaller.parameters.
_V1_SIGNING_PARAMETERS: Final = frozenset(
    {
        "AccessKeyId",
        "SecurityToken",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureType",
        "SignatureVersion",
        "Timestamp",
    }
)

_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z"
)
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
# Base64 of the 20-byte HMAC-SHA1 digest.
_V1_SIGNATURE: Final = re.compile(r"[A-Za-z0-9+/]{27}=")
# Header names are RFC 9110 tokens, lower-case in SignedHeaders.
_SIGNED_HEADERS: Final = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+(?:;[a-z0-9!#$%&'*+.^_`|~-]+)*")
# The SDKs send 32 hex digits (current SDK) or a UUID (aliyun-python-sdk-core).
# The 128-character limit keeps replay cache entries small.
_NONCE: Final = re.compile(r"[!-~]{1,128}")
_ACCESS_KEY_ID: Final = re.compile(r"[!-~]{1,128}")
# A form-encoded value is its RFC 3986 percent-encoding with "%20" written as "+"
# when it contains only A-Z a-z 0-9 -_.~, "+" and "%". Each "%" must also start
# an upper-case escape of a byte that RFC 3986 always encodes. Two simple scans
# check this faster than one combined regular expression.
_FORM_CHARACTERS: Final = re.compile(r"[A-Za-z0-9_.~+%-]*")
_NOT_RESERVED_ESCAPE: Final = re.compile(
    r"%(?![01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
)


@unique
class SignatureErrorCode(Enum):
    """An Alibaba Cloud error code for a request that fails authentication."""

    INCOMPLETE_SIGNATURE = "IncompleteSignature"
    SIGNATURE_DOES_NOT_MATCH = "SignatureDoesNotMatch"
    INVALID_ACCESS_KEY_ID_NOT_FOUND = "InvalidAccessKeyId.NotFound"
    MISSING_PARAMETER = "MissingParameter"
    INVALID_PARAMETER = "InvalidParameter"
    ILLEGAL_TIMESTAMP = "IllegalTimestamp"
    TIMESTAMP_EXPIRED = "InvalidTimeStamp.Expired"
    SIGNATURE_NONCE_USED = "SignatureNonceUsed"
    # Error codes, not passwords.
    SECURITY_TOKEN_EXPIRED = "InvalidSecurityToken.Expired"  # noqa: S105
    SECURITY_TOKEN_MALFORMED = "InvalidSecurityToken.Malformed"  # noqa: S105
    THROTTLING = "Throttling"

    @property
    def http_status(self) -> int:
        """The HTTP status of a response with this code."""
        # NOTE: the gateway's statuses for InvalidSecurityToken.* and Throttling
        # are not documented for KMS. This uses 400, as for the other signature
        # codes, and 429, as KMS returns for Rejected.Throttling.
        if self is SignatureErrorCode.INVALID_ACCESS_KEY_ID_NOT_FOUND:
            return 404
        if self is SignatureErrorCode.THROTTLING:
            return 429
        return 400


class SignatureError(RequestError):
    """A request rejected by signature verification, carrying its Alibaba Cloud code and status.

    ``code`` is the wire code (``"SignatureDoesNotMatch"``), ``error`` the same
    code as a :class:`SignatureErrorCode`, and ``http_status`` its HTTP status.
    """

    def __init__(self, error: SignatureErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.code = error.value
        self.http_status = error.http_status


@unique
class SignatureScheme(Enum):
    """A signature scheme of the Alibaba Cloud API, named by its algorithm string."""

    ACS3 = ACS3_ALGORITHM
    V1 = V1_SIGNATURE_METHOD


@dataclass(frozen=True)
class AcsCredential:
    """An AccessKey pair, with the expiry of a temporary (STS) AccessKey.

    ``expires_at`` must be timezone-aware. Requests signed with the AccessKey
    at or after that time raise ``InvalidSecurityToken.Expired``. The repr
    masks the secret.
    """

    access_key_id: str
    secret: Secret
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be a timezone-aware datetime, or None")


CredentialLookup = Callable[[str], AcsCredential | None]
"""A function from access key ID to its credential, returning None for an unknown ID."""


@dataclass(frozen=True)
class AcsRequest:
    """An HTTP request as an ASGI server delivers it.

    ``path`` is the path as sent, before percent-decoding. ``query_string``
    and ``headers`` are raw bytes, and header names may repeat. The content
    type is read from the ``content-type`` header. The repr leaves out the
    query, headers and body, which contain credentials and plaintext.
    """

    method: str
    path: str
    query_string: bytes = field(repr=False)
    headers: Sequence[tuple[bytes, bytes]] = field(repr=False)
    body: bytes = field(default=b"", repr=False)

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any], body: bytes) -> AcsRequest:
        """Build a request from an ASGI HTTP connection scope and the whole body."""
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else quote(scope["path"], safe="/")
        return cls(scope["method"], path, scope["query_string"], scope["headers"], body)


@dataclass(frozen=True)
class VerifiedCaller:
    """The authenticated caller and API call of a request whose signature verified.

    ``parameters`` contains the decoded query and form-body parameters by name
    as sent, so a list stays as ``ResourceId.1``, ``ResourceId.2`` and so on.
    It leaves out ``Action``, ``Version`` and ``SecurityToken``, and for V1 the
    other signing parameters (``AccessKeyId``, ``Signature``,
    ``SignatureMethod``, ``SignatureNonce``, ``SignatureType``,
    ``SignatureVersion``, ``Timestamp``). ``security_token`` is the STS token
    as sent, which this module does not check.
    """

    access_key_id: str
    scheme: SignatureScheme
    action: str
    version: str
    parameters: Mapping[str, str] = field(repr=False)
    security_token: str | None = field(repr=False)
    signed_at: datetime
    nonce: str


class NonceCache(abc.ABC):
    """A replay cache of signature nonces. All nodes that serve the same credentials must share one.

    An implementation on a shared database can insert ``(access_key_id,
    nonce)`` into a table with a unique constraint and delete rows whose
    ``expires_at`` has passed.

    ``blocking`` is True when :meth:`check_and_store` may wait for I/O, so
    callers on an event loop must run it in a worker thread.
    """

    blocking: bool = True

    @abc.abstractmethod
    def check_and_store(self, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
        """Store a nonce of an access key ID until ``expires_at``, and report whether it is new.

        Return True when the nonce was stored, and False when this access key
        ID already stored it and that entry has not expired, which makes the
        request a replay. Raise SignatureError with code ``Throttling`` when
        the nonce cannot be stored, so that the request is rejected.
        """


DEFAULT_NONCE_CACHE_ENTRIES: Final = 4_000_000
"""The default bound of :class:`InMemoryNonceCache`: about 360 MB when full."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryNonceCache(NonceCache):
    """A thread-safe nonce cache in this process that stores at most ``max_entries`` nonces.

    Each nonce is kept as a 64-bit fingerprint: a BLAKE2b hash of the access
    key ID and the nonce, keyed with a random key of this process, so that no
    one can choose two nonces with the same fingerprint. Two distinct nonces
    collide with a probability of about n/2^64 for n stored ones; a collision
    only refuses the later request as a replay. Fingerprints sit in one set,
    and in a bucket per expiry second, which is dropped whole when it passes.

    When ``max_entries`` unexpired nonces are stored, new ones raise
    ``Throttling`` until entries expire, because dropping an unexpired nonce
    would let a replay through. An entry takes about 90 bytes on CPython 3.11
    (x86-64), so the default of 4,000,000 takes at most about 360 MB. With a
    15-minute window and client clocks in sync, that sustains about 4,400
    signed requests per second.

    ``clock`` must be the clock of the verifier that passes ``expires_at``.
    """

    blocking = False

    def __init__(
        self,
        max_entries: int = DEFAULT_NONCE_CACHE_ENTRIES,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._fingerprints: set[int] = set()
        self._buckets: dict[int, list[int]] = {}
        self._bucket_heap: list[int] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"InMemoryNonceCache(entries={len(self._fingerprints)}, "
            f"max_entries={self.max_entries})"
        )

    def __len__(self) -> int:
        return len(self._fingerprints)

    def check_and_store(self, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
        now = self._clock().timestamp()
        expires = expires_at.timestamp()
        # Neither part contains a newline, so the joined text is unambiguous.
        digest = hashlib.blake2b(
            f"{access_key_id}\n{nonce}".encode(), digest_size=8, key=self._key
        ).digest()
        fingerprint = int.from_bytes(digest, "big")
        with self._lock:
            self._remove_expired(now)
            if fingerprint in self._fingerprints:
                return False
            if expires <= now:
                # The verifier rejects the request time before a replay could reach this.
                return True
            if len(self._fingerprints) >= self.max_entries:
                raise SignatureError(
                    SignatureErrorCode.THROTTLING,
                    f"too many signed requests within the replay window: {self.max_entries} "
                    "nonces are stored and none has expired yet, retry later",
                )
            self._fingerprints.add(fingerprint)
            # A bucket ends at the whole second after the entry's expiry, so an
            # entry is never dropped early.
            second = math.ceil(expires)
            bucket = self._buckets.get(second)
            if bucket is None:
                bucket = self._buckets[second] = []
                heapq.heappush(self._bucket_heap, second)
            bucket.append(fingerprint)
            return True

    def _remove_expired(self, now: float) -> None:
        heap = self._bucket_heap
        while heap and heap[0] <= now:
            for fingerprint in self._buckets.pop(heapq.heappop(heap)):
                self._fingerprints.discard(fingerprint)


class AcsVerifier:
    """Verify Alibaba Cloud API requests signed with ACS3-HMAC-SHA256 or V1 (HMAC-SHA1).

    ``credentials`` is a function from access key ID to :class:`AcsCredential`
    (or None), or a mapping, consulted on every request so that a rotation
    takes effect on the next request. ``nonce_cache`` defaults to an
    :class:`InMemoryNonceCache` on ``clock``. Deployments with several nodes
    must pass a cache that all nodes share.

    Example::

        verifier = AcsVerifier({"AKID": AcsCredential("AKID", Secret("..."))})
        caller = verifier.verify(AcsRequest.from_asgi(scope, body))
        caller.action, caller.parameters["KeyId"]
    """

    def __init__(
        self,
        credentials: CredentialLookup | Mapping[str, AcsCredential],
        *,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        clock: Callable[[], datetime] = _utc_now,
        nonce_cache: NonceCache | None = None,
    ) -> None:
        if max_skew <= timedelta(0):
            raise ValueError(f"max_skew must be positive, got {max_skew}")
        self._lookup: CredentialLookup = (
            credentials.get if isinstance(credentials, Mapping) else credentials
        )
        self.max_skew = max_skew
        self._clock = clock
        self.nonce_cache = (
            nonce_cache if nonce_cache is not None else InMemoryNonceCache(clock=clock)
        )

    def __repr__(self) -> str:
        return f"AcsVerifier(max_skew={self.max_skew!r}, nonce_cache={self.nonce_cache!r})"

    def verify(self, request: AcsRequest) -> VerifiedCaller:
        """Check the signature, time and nonce of a request, and return its caller and API call.

        A request with an ``Authorization`` header is verified as ACS3, one
        with a ``Signature`` query parameter as V1. The nonce is stored only
        after the signature verifies.

        Raises SignatureError. Its message may contain the access key ID,
        parameter and header names, the path, and the values of signing
        fields such as the action, time and nonce. It never contains the
        secret, the expected signature or the value of an API parameter such
        as ``Plaintext``.
        """
        fields: dict[bytes, list[bytes]] = {}
        for name, value in request.headers:
            fields.setdefault(name.lower(), []).append(value)
        query: dict[str, str] = {}
        query_pairs: dict[str, str] = {}
        _parse_form(request.query_string, "query string", query, query_pairs)

        if b"authorization" in fields:
            return self._verify_acs3(request, fields, query, query_pairs)
        if "Signature" in query:
            return self._verify_v1(request, fields, query, query_pairs)
        if b"x-acs-bearer-token" in fields or query.get("SignatureType") == "BEARERTOKEN":
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                "bearer-token authentication is not supported: sign the request with an "
                f"AccessKey ({ACS3_ALGORITHM} or {V1_SIGNATURE_METHOD})",
            )
        raise SignatureError(
            SignatureErrorCode.MISSING_PARAMETER,
            "the request is not signed: send an Authorization header "
            f"({ACS3_ALGORITHM}) or a Signature query parameter ({V1_SIGNATURE_METHOD})",
        )

    def _verify_acs3(
        self,
        request: AcsRequest,
        fields: dict[bytes, list[bytes]],
        query: dict[str, str],
        query_pairs: dict[str, str],
    ) -> VerifiedCaller:
        authorization = _parse_authorization(fields[b"authorization"])
        names = authorization.signed_headers.split(";")
        for required in _REQUIRED_SIGNED:
            if required not in names:
                raise SignatureError(
                    SignatureErrorCode.INCOMPLETE_SIGNATURE,
                    f"SignedHeaders does not include {required!r}: sign the host, x-acs-action, "
                    "x-acs-version, x-acs-date and x-acs-signature-nonce headers",
                )
        for name in _SIGNED_WHEN_SENT:
            if name.encode("ascii") in fields and name not in names:
                raise SignatureError(
                    SignatureErrorCode.INCOMPLETE_SIGNATURE,
                    f"the request has a {name} header that SignedHeaders does not include: "
                    f"sign every {', '.join(_SIGNED_WHEN_SENT)} header that the request sends",
                )

        date = _single_header(fields, "x-acs-date")
        signed_at = _parse_time(date, "x-acs-date header")
        self._check_time(signed_at, date, "x-acs-date header")
        nonce = _check_nonce(
            _single_header(fields, "x-acs-signature-nonce"), "x-acs-signature-nonce"
        )
        action = _match_parameter(_single_header(fields, "x-acs-action"), query, "Action")
        version = _match_parameter(_single_header(fields, "x-acs-version"), query, "Version")

        payload_hash = hashlib.sha256(request.body).hexdigest()
        declared_hash = _optional_header(fields, "x-acs-content-sha256")
        if declared_hash is not None and declared_hash != payload_hash:
            raise SignatureError(
                SignatureErrorCode.SIGNATURE_DOES_NOT_MATCH,
                "x-acs-content-sha256 does not match the SHA-256 of the request body: send the "
                "lower-case hex SHA-256 of the exact body bytes",
            )
        parameters = dict(query)
        if request.body and _content_type(fields) == _FORM_MEDIA_TYPE:
            _parse_form(request.body, "form body", parameters, None)

        token = _optional_header(fields, "x-acs-security-token")
        token = _security_token(token, query.get("SecurityToken"))
        header_key_id = _optional_header(fields, "x-acs-accesskey-id")
        if header_key_id is not None and header_key_id != authorization.access_key_id:
            raise SignatureError(
                SignatureErrorCode.INVALID_PARAMETER,
                f"x-acs-accesskey-id {_shown(header_key_id)} differs from the Credential "
                f"{_shown(authorization.access_key_id)} of the Authorization header: send the "
                "access key ID that signs the request",
            )

        credential = self._credential(authorization.access_key_id)
        # The Python SDK leaves parameter names unencoded here. That gives the
        # same bytes for names of letters, digits and "-_.~", as all KMS names are.
        canonical_request = b"\n".join(
            (
                request.method.encode("ascii"),
                unquote_to_bytes(request.path or "/"),
                "&".join([query_pairs[name] for name in sorted(query_pairs)]).encode("ascii"),
                _canonical_headers(fields, names),
                authorization.signed_headers.encode("ascii"),
                payload_hash.encode("ascii"),
            )
        )
        string_to_sign = f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request).hexdigest()}"
        expected = hmac.digest(
            credential.secret.reveal_bytes(), string_to_sign.encode("ascii"), "sha256"
        ).hex()
        if not hmac.compare_digest(
            expected.encode("ascii"), authorization.signature.encode("ascii")
        ):
            raise SignatureError(
                SignatureErrorCode.SIGNATURE_DOES_NOT_MATCH,
                "the ACS3-HMAC-SHA256 signature does not match: check the AccessKey secret, and "
                "that the request reaches this server unchanged. The server's string to sign "
                f"is {string_to_sign!r}",
            )

        self._check_nonce_unused(authorization.access_key_id, nonce, signed_at)
        for name in ("Action", "Version", "SecurityToken"):
            parameters.pop(name, None)
        return VerifiedCaller(
            authorization.access_key_id,
            SignatureScheme.ACS3,
            action,
            version,
            parameters,
            token,
            signed_at,
            nonce,
        )

    def _verify_v1(
        self,
        request: AcsRequest,
        fields: dict[bytes, list[bytes]],
        query: dict[str, str],
        query_pairs: dict[str, str],
    ) -> VerifiedCaller:
        if request.path not in ("", "/"):
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"the V1 signature covers only the path '/', not {_shown(request.path)}: send "
                "the request to '/'",
            )
        parameters = dict(query)
        pairs = dict(query_pairs)
        if request.body:
            if _content_type(fields) != _FORM_MEDIA_TYPE:
                raise SignatureError(
                    SignatureErrorCode.INCOMPLETE_SIGNATURE,
                    "the V1 signature does not cover a request body that is not "
                    f"{_FORM_MEDIA_TYPE}: send the parameters in the query string or as a form",
                )
            _parse_form(request.body, "form body", parameters, pairs)

        signature = parameters["Signature"]
        access_key_id = _required_parameter(parameters, "AccessKeyId")
        method = _required_parameter(parameters, "SignatureMethod")
        if method != V1_SIGNATURE_METHOD:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"unsupported SignatureMethod {_shown(method)}: sign with {V1_SIGNATURE_METHOD}",
            )
        signature_version = _required_parameter(parameters, "SignatureVersion")
        if signature_version != V1_SIGNATURE_VERSION:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"unsupported SignatureVersion {_shown(signature_version)}: send "
                f"SignatureVersion={V1_SIGNATURE_VERSION}",
            )
        if parameters.get("SignatureType", ""):
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"unsupported SignatureType {_shown(parameters['SignatureType'])}: sign with an "
                "AccessKey and send SignatureType empty or not at all",
            )
        if not _V1_SIGNATURE.fullmatch(signature):
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                "malformed Signature parameter: expected the Base64 of a 20-byte HMAC-SHA1, "
                "percent-encoded in the query string",
            )
        if not _ACCESS_KEY_ID.fullmatch(access_key_id):
            raise SignatureError(
                SignatureErrorCode.INVALID_PARAMETER,
                "malformed AccessKeyId parameter: expected 1 to 128 printable ASCII characters",
            )

        timestamp = _required_parameter(parameters, "Timestamp")
        signed_at = _parse_time(timestamp, "Timestamp parameter")
        self._check_time(signed_at, timestamp, "Timestamp parameter")
        nonce = _check_nonce(_required_parameter(parameters, "SignatureNonce"), "SignatureNonce")
        action = _required_parameter(parameters, "Action")
        version = _required_parameter(parameters, "Version")
        # The current SDK also sends x-acs-action and x-acs-version, unsigned in V1.
        _match_header(fields, "x-acs-action", action, "Action")
        _match_header(fields, "x-acs-version", version, "Version")
        token = _security_token(None, parameters.get("SecurityToken"))

        credential = self._credential(access_key_id)
        canonical_query = "&".join([pairs[name] for name in sorted(pairs) if name != "Signature"])
        # Percent-encoding the canonical query again changes only these three
        # characters, because it contains nothing else outside A-Z a-z 0-9 -_.~.
        encoded_query = canonical_query.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
        string_to_sign = f"{request.method}&%2F&{encoded_query}"
        digest = hmac.digest(
            credential.secret.reveal_bytes() + b"&", string_to_sign.encode("utf-8"), "sha1"
        )
        expected = base64.b64encode(digest)
        if not hmac.compare_digest(expected, signature.encode("ascii")):
            raise SignatureError(
                SignatureErrorCode.SIGNATURE_DOES_NOT_MATCH,
                "the V1 (HMAC-SHA1) signature does not match: check the AccessKey secret, that "
                "the string to sign uses the HTTP method of the request, and that the request "
                "reaches this server unchanged",
            )

        self._check_nonce_unused(access_key_id, nonce, signed_at)
        for name in (*_V1_SIGNING_PARAMETERS, "Action", "Version"):
            parameters.pop(name, None)
        return VerifiedCaller(
            access_key_id, SignatureScheme.V1, action, version, parameters, token, signed_at, nonce
        )

    def _check_time(self, signed_at: datetime, shown_time: str, source: str) -> None:
        now = self._clock()
        skew = (signed_at - now).total_seconds()
        if abs(skew) <= self.max_skew.total_seconds():
            return
        direction = "before" if skew < 0 else "after"
        raise SignatureError(
            SignatureErrorCode.TIMESTAMP_EXPIRED,
            f"the {source} {shown_time} is {math.ceil(abs(skew))} seconds {direction} the server "
            f"time, more than the {self.max_skew.total_seconds():.0f} seconds allowed: sign with "
            "the current time and check that the client clock is synchronized",
        )

    def _credential(self, access_key_id: str) -> AcsCredential:
        credential = self._lookup(access_key_id)
        if credential is None:
            raise SignatureError(
                SignatureErrorCode.INVALID_ACCESS_KEY_ID_NOT_FOUND,
                f"access key ID {_shown(access_key_id)} is not found: sign with an AccessKey "
                "that this KMS knows",
            )
        if credential.expires_at is not None and credential.expires_at <= self._clock():
            raise SignatureError(
                SignatureErrorCode.SECURITY_TOKEN_EXPIRED,
                f"the temporary AccessKey {_shown(access_key_id)} expired at "
                f"{credential.expires_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}: obtain new "
                "STS credentials",
            )
        return credential

    def _check_nonce_unused(self, access_key_id: str, nonce: str, signed_at: datetime) -> None:
        # After signed_at + max_skew the time check rejects the request, so the
        # nonce need not be kept longer.
        if not self.nonce_cache.check_and_store(access_key_id, nonce, signed_at + self.max_skew):
            raise SignatureError(
                SignatureErrorCode.SIGNATURE_NONCE_USED,
                f"signature nonce {_shown(nonce)} was already used by access key ID "
                f"{_shown(access_key_id)}: sign every request with a new random nonce",
            )


@dataclass(frozen=True, slots=True)
class _Authorization:
    """The parsed parts of an ``ACS3-HMAC-SHA256`` Authorization header."""

    access_key_id: str
    signed_headers: str
    signature: str


def _parse_authorization(values: list[bytes]) -> _Authorization:
    if len(values) > 1:
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            f"the request has {len(values)} Authorization headers: send exactly one",
        )
    try:
        header = values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            "malformed Authorization header: it contains non-ASCII bytes",
        ) from None

    algorithm, _, rest = header.partition(" ")
    if algorithm != ACS3_ALGORITHM:
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            f"unsupported Authorization algorithm {_shown(algorithm)}: sign with "
            f"{ACS3_ALGORITHM}, or with {V1_SIGNATURE_METHOD} in a Signature query parameter "
            "and no Authorization header",
        )

    parts: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if name not in ("Credential", "SignedHeaders", "Signature") or not equals:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"malformed Authorization header: unexpected part {_shown(part.strip())}, "
                "expected Credential=..., SignedHeaders=... and Signature=... separated by commas",
            )
        if name in parts:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"malformed Authorization header: {name} appears twice, send it once",
            )
        parts[name] = value
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in parts:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"malformed Authorization header: {name} is missing",
            )

    if not _ACCESS_KEY_ID.fullmatch(parts["Credential"]):
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            "malformed Credential in the Authorization header: expected the access key ID, "
            "1 to 128 printable ASCII characters",
        )
    signed_headers = parts["SignedHeaders"]
    if not _SIGNED_HEADERS.fullmatch(signed_headers):
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            f"malformed SignedHeaders {_shown(signed_headers)} in the Authorization header: "
            "list lower-case header names separated by ';'",
        )
    names = signed_headers.split(";")
    if names != sorted(set(names)):
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            f"malformed SignedHeaders {_shown(signed_headers)} in the Authorization header: "
            "list each header name once, in sorted order",
        )
    if not _HEX_SIGNATURE.fullmatch(parts["Signature"]):
        raise SignatureError(
            SignatureErrorCode.INCOMPLETE_SIGNATURE,
            "malformed Signature in the Authorization header: expected 64 lower-case hex digits",
        )
    return _Authorization(parts["Credential"], signed_headers, parts["Signature"])


def _parse_form(
    raw: bytes, source: str, values: dict[str, str], pairs: dict[str, str] | None
) -> None:
    """Decode ``name=value&...`` form encoding into ``values``, rejecting a name that repeats.

    When ``pairs`` is given, it receives each parameter as ``name=value`` in
    RFC 3986 percent-encoding, the form that both canonical queries use.
    """
    if not raw:
        return
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError(
            SignatureErrorCode.INVALID_PARAMETER,
            f"the {source} contains raw non-ASCII bytes: percent-encode them as UTF-8",
        ) from None
    for item in text.split("&"):
        if not item:
            continue
        raw_name, _, raw_value = item.partition("=")
        try:
            name = unquote_plus(raw_name, errors="strict")
            value = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise SignatureError(
                SignatureErrorCode.INVALID_PARAMETER,
                f"the {source} is not valid UTF-8 after percent-decoding, near "
                f"{_shown(raw_name)}: percent-encode names and values as UTF-8",
            ) from None
        if not name:
            raise SignatureError(
                SignatureErrorCode.INVALID_PARAMETER,
                f"the {source} contains a parameter without a name: remove it",
            )
        if name in values:
            raise SignatureError(
                SignatureErrorCode.INVALID_PARAMETER,
                f"parameter {_shown(name)} appears more than once in the {source}, or in both "
                "the query string and the body: send each parameter once",
            )
        values[name] = value
        if pairs is not None:
            pairs[name] = f"{_encoded(raw_name, name)}={_encoded(raw_value, value)}"


def _encoded(raw: str, decoded: str) -> str:
    """Percent-encode ``decoded`` by RFC 3986, reusing ``raw``, its form encoding, if it can."""
    # Both SDKs send every value in this form, so large values skip the
    # per-character encoding in quote(), about 30 ns a byte on CPython 3.11.
    if _FORM_CHARACTERS.fullmatch(raw) and not _NOT_RESERVED_ESCAPE.search(raw):
        return raw.replace("+", "%20")
    return quote(decoded, safe="~")


def _content_type(fields: Mapping[bytes, list[bytes]]) -> str | None:
    value = _optional_header(fields, "content-type")
    if value is None:
        return None
    return value.partition(";")[0].strip().lower()


def _canonical_headers(fields: Mapping[bytes, list[bytes]], names: list[str]) -> bytes:
    """Build the canonical headers block, ending in a blank line as the canonical request needs."""
    lines = []
    for name in names:
        values = fields.get(name.encode("ascii"))
        if values is None:
            raise SignatureError(
                SignatureErrorCode.INCOMPLETE_SIGNATURE,
                f"signed header {name!r} is missing from the request: send every header listed "
                "in SignedHeaders",
            )
        # The SDK trims each value, sorts repeated values and joins them with commas.
        if len(values) == 1:
            text = values[0].decode("latin-1").strip()
        else:
            text = ",".join(sorted(value.decode("latin-1").strip() for value in values))
        lines.append(f"{name}:{text}\n")
    return "".join(lines).encode("utf-8")


def _single_header(fields: Mapping[bytes, list[bytes]], name: str) -> str:
    value = _optional_header(fields, name)
    if value is None:
        raise SignatureError(
            SignatureErrorCode.MISSING_PARAMETER,
            f"the {name} header is missing: an ACS3-signed request must send and sign it",
        )
    return value


def _optional_header(fields: Mapping[bytes, list[bytes]], name: str) -> str | None:
    values = fields.get(name.encode("ascii"))
    if values is None:
        return None
    if len(values) > 1:
        raise SignatureError(
            SignatureErrorCode.INVALID_PARAMETER,
            f"the request has {len(values)} {name} headers: send exactly one",
        )
    return values[0].decode("latin-1").strip()


def _required_parameter(parameters: Mapping[str, str], name: str) -> str:
    value = parameters.get(name)
    if not value:
        raise SignatureError(
            SignatureErrorCode.MISSING_PARAMETER,
            f"the {name} parameter is missing or empty: a V1-signed request must send it",
        )
    return value


def _match_parameter(header_value: str, query: Mapping[str, str], name: str) -> str:
    """Return a signed x-acs-action or x-acs-version value that the query does not contradict."""
    if not header_value:
        raise SignatureError(
            SignatureErrorCode.MISSING_PARAMETER,
            f"the x-acs-{name.lower()} header is empty: send the API {name.lower()}",
        )
    parameter = query.get(name)
    if parameter is not None and parameter != header_value:
        raise SignatureError(
            SignatureErrorCode.INVALID_PARAMETER,
            f"the {name} parameter {_shown(parameter)} differs from the x-acs-{name.lower()} "
            f"header {_shown(header_value)}: send one {name.lower()}, or the same in both",
        )
    return header_value


def _match_header(fields: Mapping[bytes, list[bytes]], name: str, expected: str, role: str) -> None:
    value = _optional_header(fields, name)
    if value is not None and value != expected:
        raise SignatureError(
            SignatureErrorCode.INVALID_PARAMETER,
            f"the {name} header {_shown(value)} differs from the {role} parameter "
            f"{_shown(expected)}: send the same {role.lower()} in both, or leave out the header",
        )


def _security_token(header: str | None, parameter: str | None) -> str | None:
    if header is not None and parameter is not None and header != parameter:
        raise SignatureError(
            SignatureErrorCode.SECURITY_TOKEN_MALFORMED,
            "the x-acs-security-token header and the SecurityToken parameter differ: send the "
            "STS token once",
        )
    token = header if header is not None else parameter
    if token is not None and (not token or not token.isprintable()):
        raise SignatureError(
            SignatureErrorCode.SECURITY_TOKEN_MALFORMED,
            "the STS security token is empty or contains control characters: send the "
            "SecurityToken that STS returned, or none for a permanent AccessKey",
        )
    return token


def _check_nonce(nonce: str, source: str) -> str:
    if not _NONCE.fullmatch(nonce):
        raise SignatureError(
            SignatureErrorCode.INVALID_PARAMETER,
            f"malformed {source}: expected 1 to 128 printable ASCII characters without spaces, "
            "such as 32 random hex digits",
        )
    return nonce


def _parse_time(value: str, source: str) -> datetime:
    match = _TIMESTAMP.fullmatch(value)
    if match:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            pass
    raise SignatureError(
        SignatureErrorCode.ILLEGAL_TIMESTAMP,
        f"malformed {source} {_shown(value)}: send the signing time as {_TIME_FORMAT}",
    )


def _shown(value: str) -> str:
    """Return a request value quoted for an error message, cut to 64 printable ASCII characters."""
    cut = value[:64] + ("..." if len(value) > 64 else "")
    return repr("".join(c if " " <= c <= "~" else "?" for c in cut))
