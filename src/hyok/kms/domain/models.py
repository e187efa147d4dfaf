"""The records of the KMS: accounts, AccessKeys, external key instances, keys and key versions.

Pure code, no I/O. Each record is a frozen dataclass whose constructor checks
every field, so a record that exists is valid. Fields are keyword-only.
Enumerated fields accept the enum or its wire string and always hold the
enum. Datetimes must be timezone-aware and are converted to UTC.

Errors: a field value that a request can carry (an ID, a name, a
description, a state) raises :class:`hyok.common.errors.ValidationError`,
whose message names the field, shows the value cut to printable ASCII and
states the rule. A naive datetime or a value of the wrong type raises
TypeError or ValueError, because no request supplies those directly and they
are bugs. Secrets never appear in a message or a repr.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Generic, TypeVar

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain._checks import (
    check_account_id,
    check_datetime,
    check_enum,
    check_instance_id,
    check_key_id,
    check_key_version_id,
    check_optional_datetime,
    check_pattern,
    check_region,
    check_secret,
    check_str,
    check_text,
    set_field,
    shown,
)
from hyok.kms.domain.ids import instance_arn, key_arn

__all__ = [
    "MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ENDPOINT_LENGTH",
    "MAX_ERROR_DETAIL_LENGTH",
    "MAX_INSTANCE_NAME_LENGTH",
    "MAX_PAGE_SIZE",
    "MAX_POLICY_BYTES",
    "AccessKey",
    "AccessKeyStatus",
    "Account",
    "Connectivity",
    "Instance",
    "InstanceErrorReason",
    "InstanceStatus",
    "Key",
    "KeyFilter",
    "KeyOrigin",
    "KeySpec",
    "KeyState",
    "KeyUsage",
    "KeyVersion",
    "Page",
    "PageRequest",
    "ProtectionLevel",
]

MAX_DESCRIPTION_LENGTH: Final = 8_192  # characters, the CreateKey limit
MAX_POLICY_BYTES: Final = 32_768  # UTF-8 bytes of the policy JSON, the SetKeyPolicy limit
# NOTE: Alibaba Cloud documents no limit for this description; 1,024 is hyok's.
MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH: Final = 1_024
MAX_ERROR_DETAIL_LENGTH: Final = 1_024
MAX_PAGE_SIZE: Final = 100
MAX_INSTANCE_NAME_LENGTH: Final = 128
MAX_ENDPOINT_LENGTH: Final = 2_048

_ACCESS_KEY_ID: Final = re.compile(r"[A-Za-z0-9]{16,128}")
_ACCESS_KEY_SECRET: Final = re.compile(r"[!-~]{16,128}")
# The rule of the XKS proxy API v1 for external key IDs.
_EXTERNAL_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CREATOR: Final = re.compile(r"[!-~]{1,64}")
# The RAM user name rule, as hyok.kms.domain.ram.USER_NAME states it.
_USER_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The rules that hyok.kms.xki_client.ProxyBinding applies when it connects.
_URI_PATH: Final = re.compile(r"/(?:[A-Za-z0-9/_-]{0,116}/)?kms/xks/v1")
_PROXY_ACCESS_KEY_ID: Final = re.compile(r"[A-Z2-7]{20,30}")
_PROXY_SECRET: Final = re.compile(r"[A-Za-z0-9/+=]{43,64}")
_ENDPOINT: Final = re.compile(r"https://[!-~]+")
_VPC_ENDPOINT_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_TLS_FINGERPRINT: Final = re.compile(r"[0-9a-f]{64}")

_E = TypeVar("_E", bound=enum.StrEnum)


# --- Enumerations -----------------------------------------------------------------


@enum.unique
class AccessKeyStatus(enum.StrEnum):
    """Whether an AccessKey may sign requests."""

    ACTIVE = "Active"
    INACTIVE = "Inactive"


@enum.unique
class InstanceStatus(enum.StrEnum):
    """Connection state of an external key instance's XKI proxy, as GetKmsInstance returns it."""

    UNINITIALIZED = "Uninitialized"
    """Created, and no health check has finished yet."""
    CONNECTING = "Connecting"
    """A health check is running for the first time or after a change of the proxy settings."""
    CONNECTED = "Connected"
    """The last health check succeeded, so cryptographic operations may run."""
    DISCONNECTED = "Disconnected"
    """The proxy could not be reached, or an operator disconnected the instance."""
    ERROR = "Error"
    """The proxy responded but is misconfigured. ``error_reason`` names the fault."""


@enum.unique
class InstanceErrorReason(enum.StrEnum):
    """Cause of the last failed health check of an XKI proxy."""

    CREDENTIALS_REJECTED = "CredentialsRejected"
    URI_PATH_INVALID = "UriPathInvalid"
    PROXY_UNREACHABLE = "ProxyUnreachable"
    TIMED_OUT = "TimedOut"
    INVALID_RESPONSE = "InvalidResponse"
    TLS_FAILURE = "TlsFailure"
    PROXY_FAILURE = "ProxyFailure"
    """The proxy or its key manager returned an internal error."""


@enum.unique
class Connectivity(enum.StrEnum):
    """Network path from the KMS to an XKI proxy.

    The values equal those of :class:`hyok.kms.xki_client.Connectivity`, so
    one converts to the other by value.
    """

    PUBLIC = "public"
    """A public endpoint, reached through DNS."""
    VPC = "vpc"
    """A VPC endpoint service, which the deployment maps to a private address."""


@enum.unique
class KeyState(enum.StrEnum):
    """State of a KMS key."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"


@enum.unique
class KeySpec(enum.StrEnum):
    """Key spec. External keys are symmetric AES-256 only."""

    ALIYUN_AES_256 = "Aliyun_AES_256"


@enum.unique
class KeyUsage(enum.StrEnum):
    """Key usage. External keys only encrypt and decrypt."""

    ENCRYPT_DECRYPT = "ENCRYPT/DECRYPT"


@enum.unique
class KeyOrigin(enum.StrEnum):
    """Source of the key material, as KeyMetadata ``Origin`` reports it."""

    ALIYUN_KMS = "Aliyun_KMS"
    EXTERNAL = "EXTERNAL"


@enum.unique
class ProtectionLevel(enum.StrEnum):
    """Protection level, as KeyMetadata ``ProtectionLevel`` reports it."""

    SOFTWARE = "SOFTWARE"
    HSM = "HSM"


# --- Checks of Key fields ----------------------------------------------------------


def _check_policy(value: object) -> str:
    text = check_str("policy", value)
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise ValidationError(
            f"policy has {size} bytes in UTF-8: the maximum is {MAX_POLICY_BYTES}"
        )
    try:
        document = json.loads(text)
    except ValueError:
        raise ValidationError("policy is not valid JSON: give a JSON object") from None
    if not isinstance(document, dict):
        raise ValidationError("policy is not a JSON object: give a JSON object")
    if "\x00" in text:
        raise ValidationError("policy contains a NUL character: remove it")
    return text


# --- Records --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Account:
    """A tenant of the KMS, named by its numeric account ID (the owner UID)."""

    account_id: str
    created_at: datetime

    def __post_init__(self) -> None:
        check_account_id("account_id", self.account_id)
        set_field(self, "created_at", check_datetime("created_at", self.created_at))


@dataclass(frozen=True, kw_only=True)
class AccessKey:
    """An AccessKey pair that signs API requests. The repr leaves out the secret.

    ``user_name`` is the RAM user that owns the AccessKey, or None for an
    AccessKey of the account itself (its root).
    """

    access_key_id: str
    account_id: str
    secret: Secret = field(repr=False, hash=False)
    status: AccessKeyStatus = AccessKeyStatus.ACTIVE
    created_at: datetime
    user_name: str | None = None

    def __post_init__(self) -> None:
        check_pattern(
            "access_key_id",
            self.access_key_id,
            _ACCESS_KEY_ID,
            "use 16 to 128 letters and digits",
        )
        check_account_id("account_id", self.account_id)
        check_secret(
            "AccessKey secret",
            self.secret,
            _ACCESS_KEY_SECRET,
            "use 16 to 128 printable ASCII characters without spaces",
        )
        set_field(self, "status", check_enum("status", self.status, AccessKeyStatus))
        set_field(self, "created_at", check_datetime("created_at", self.created_at))
        if self.user_name is not None:
            check_pattern(
                "user_name",
                self.user_name,
                _USER_NAME,
                "use 1 to 64 letters, digits, '.', '_' or '-'",
            )


@dataclass(frozen=True, kw_only=True)
class Instance:
    """An external key management instance and the settings of its XKI proxy.

    An instance may exist before its proxy is configured. Then
    ``proxy_endpoint``, ``proxy_uri_path``, ``proxy_access_key_id`` and
    ``proxy_secret`` are all None, and so are ``vpc_endpoint_service`` and
    ``tls_fingerprint``. Such an instance has connectivity ``public``, and its
    status is ``Uninitialized`` or ``Disconnected``, because no health check
    can run without a proxy. A configured instance has all four proxy fields.

    ``proxy_endpoint`` is ``https://host[:port]``, and ``proxy_uri_path`` ends
    in ``/kms/xks/v1``. ``vpc_endpoint_service`` is set exactly when
    ``connectivity`` is ``vpc``. ``tls_fingerprint`` is the SHA-256 of the
    proxy's certificate in 64 lower-case hex digits. The proxy credential has
    the XKS form (an access key ID of 20 to 30 characters from A-Z and 2-7,
    and a secret of 43 to 64 Base64 characters). hyok.kms.xki_client checks
    the endpoint in full when it connects.

    ``error_reason`` is required when ``status`` is ``Error``, allowed when it
    is ``Disconnected``, and None otherwise. ``error_detail`` is empty
    without a reason. The repr leaves out the proxy secret.
    """

    instance_id: str
    account_id: str
    region: str
    name: str
    connectivity: Connectivity = Connectivity.PUBLIC
    proxy_endpoint: str | None = None
    proxy_uri_path: str | None = None
    vpc_endpoint_service: str | None = None
    proxy_access_key_id: str | None = None
    proxy_secret: Secret | None = field(default=None, repr=False, hash=False)
    tls_fingerprint: str | None = None
    status: InstanceStatus = InstanceStatus.UNINITIALIZED
    error_reason: InstanceErrorReason | None = None
    error_detail: str = ""
    last_health_check_at: datetime | None = None
    created_at: datetime

    def __post_init__(self) -> None:
        check_instance_id("instance_id", self.instance_id)
        check_account_id("account_id", self.account_id)
        check_region(self.region)
        check_text("name", self.name, MAX_INSTANCE_NAME_LENGTH, allow_empty=False)
        connectivity = check_enum("connectivity", self.connectivity, Connectivity)
        set_field(self, "connectivity", connectivity)
        if self._check_configured():
            self._check_proxy(connectivity)
        self._check_status()
        set_field(
            self,
            "last_health_check_at",
            check_optional_datetime("last_health_check_at", self.last_health_check_at),
        )
        set_field(self, "created_at", check_datetime("created_at", self.created_at))

    @property
    def configured(self) -> bool:
        """Whether the instance has an XKI proxy configuration, so that it can be connected."""
        return self.proxy_endpoint is not None

    def same_proxy_configuration(self, other: Instance) -> bool:
        """Return whether ``other`` has the same XKI proxy settings as this instance.

        Compares connectivity, endpoint, URI path, VPC endpoint service,
        credential and TLS fingerprint, the secrets in constant time.
        """
        return (
            self.connectivity is other.connectivity
            and self.proxy_endpoint == other.proxy_endpoint
            and self.proxy_uri_path == other.proxy_uri_path
            and self.vpc_endpoint_service == other.vpc_endpoint_service
            and self.proxy_access_key_id == other.proxy_access_key_id
            and self.proxy_secret == other.proxy_secret
            and self.tls_fingerprint == other.tls_fingerprint
        )

    def _check_configured(self) -> bool:
        """Check that the proxy fields are all set or all None, and return whether they are set."""
        proxy_fields = {
            "proxy_endpoint": self.proxy_endpoint,
            "proxy_uri_path": self.proxy_uri_path,
            "proxy_access_key_id": self.proxy_access_key_id,
            "proxy_secret": self.proxy_secret,
        }
        missing = [name for name, value in proxy_fields.items() if value is None]
        if len(missing) == len(proxy_fields):
            self._check_unconfigured()
            return False
        if missing:
            raise ValidationError(
                f"{', '.join(missing)} missing: a proxy configuration needs proxy_endpoint, "
                "proxy_uri_path, proxy_access_key_id and proxy_secret, so set all four or none"
            )
        return True

    def _check_unconfigured(self) -> None:
        for name in ("vpc_endpoint_service", "tls_fingerprint"):
            value = getattr(self, name)
            if value is not None:
                raise ValidationError(
                    f"{name} {shown(value)} is set but the instance has no proxy configuration: "
                    "remove it, or set the proxy endpoint, URI path, access key ID and secret"
                )
        if self.connectivity is not Connectivity.PUBLIC:
            raise ValidationError(
                f"connectivity {shown(self.connectivity)} needs a proxy configuration with a "
                "VPC endpoint service: set the proxy fields, or use connectivity 'public'"
            )
        status = check_enum("status", self.status, InstanceStatus)
        if status not in (InstanceStatus.UNINITIALIZED, InstanceStatus.DISCONNECTED):
            raise ValidationError(
                f"status {shown(status)} needs a proxy configuration: an instance without one "
                "is 'Uninitialized' or 'Disconnected'"
            )

    def _check_proxy(self, connectivity: Connectivity) -> None:
        endpoint = check_text(
            "proxy_endpoint", self.proxy_endpoint, MAX_ENDPOINT_LENGTH, allow_empty=False
        )
        check_pattern(
            "proxy_endpoint",
            endpoint,
            _ENDPOINT,
            "write https://host[:port] with printable ASCII and no spaces",
        )
        check_pattern(
            "proxy_uri_path",
            self.proxy_uri_path,
            _URI_PATH,
            "use '/kms/xks/v1' after an optional prefix that starts with '/', at most 128 "
            "characters from letters, digits, '/', '-' and '_'",
        )
        if connectivity is Connectivity.VPC:
            if self.vpc_endpoint_service is None:
                raise ValidationError(
                    "vpc_endpoint_service is missing: connectivity 'vpc' needs the name of "
                    "the VPC endpoint service"
                )
            check_pattern(
                "vpc_endpoint_service",
                self.vpc_endpoint_service,
                _VPC_ENDPOINT_SERVICE,
                "use 1 to 255 letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        elif self.vpc_endpoint_service is not None:
            raise ValidationError(
                f"vpc_endpoint_service {shown(self.vpc_endpoint_service)} is set but "
                "connectivity is 'public': remove it or use connectivity 'vpc'"
            )
        check_pattern(
            "proxy_access_key_id",
            self.proxy_access_key_id,
            _PROXY_ACCESS_KEY_ID,
            "use 20 to 30 characters from A-Z and 2-7, as the proxy issued it",
        )
        check_secret(
            "proxy secret",
            self.proxy_secret,
            _PROXY_SECRET,
            "use 43 to 64 characters from letters, digits, '/', '+' and '='",
        )
        if self.tls_fingerprint is not None:
            check_pattern(
                "tls_fingerprint",
                self.tls_fingerprint,
                _TLS_FINGERPRINT,
                "give the SHA-256 fingerprint as 64 lower-case hex digits without ':'",
            )

    def _check_status(self) -> None:
        status = check_enum("status", self.status, InstanceStatus)
        set_field(self, "status", status)
        reason = self.error_reason
        if reason is not None:
            reason = check_enum("error_reason", reason, InstanceErrorReason)
            set_field(self, "error_reason", reason)
        if status is InstanceStatus.ERROR and reason is None:
            raise ValidationError("error_reason is missing: status 'Error' needs a reason")
        if reason is not None and status not in (InstanceStatus.ERROR, InstanceStatus.DISCONNECTED):
            raise ValidationError(
                f"error_reason {shown(reason)} is set but status is {shown(status)}: only "
                "'Error' and 'Disconnected' have a reason"
            )
        check_text("error_detail", self.error_detail, MAX_ERROR_DETAIL_LENGTH, allow_empty=True)
        if self.error_detail and reason is None:
            raise ValidationError(
                "error_detail is set without an error_reason: set both or neither"
            )

    @property
    def arn(self) -> str:
        """The instance ARN, ``acs:kms:<region>:<account>:keystore/<instance ID>``."""
        return instance_arn(self.region, self.account_id, self.instance_id)


@dataclass(frozen=True, kw_only=True)
class Key:
    """The metadata of one KMS key backed by an external key. The key material stays in the KMI.

    ``creator`` is the UID that created the key, and ``policy`` the key policy
    as JSON text. ``delete_date`` is set exactly when ``state`` is
    ``PendingDeletion``. A key with ``deletion_protection`` cannot be
    ``PendingDeletion``, and ``deletion_protection_description`` is empty
    when protection is off.
    """

    key_id: str
    account_id: str
    region: str
    instance_id: str
    external_key_id: str
    description: str = ""
    state: KeyState = KeyState.ENABLED
    key_spec: KeySpec = KeySpec.ALIYUN_AES_256
    key_usage: KeyUsage = KeyUsage.ENCRYPT_DECRYPT
    origin: KeyOrigin
    protection_level: ProtectionLevel
    creator: str
    created_at: datetime
    primary_key_version_id: str
    deletion_protection: bool = False
    deletion_protection_description: str = ""
    delete_date: datetime | None = None
    policy: str

    def __post_init__(self) -> None:
        check_key_id("key_id", self.key_id)
        check_account_id("account_id", self.account_id)
        check_region(self.region)
        check_instance_id("instance_id", self.instance_id)
        check_pattern(
            "external_key_id",
            self.external_key_id,
            _EXTERNAL_KEY_ID,
            "use 1 to 128 characters from letters, digits, '-', '.' and '_'",
        )
        check_text("description", self.description, MAX_DESCRIPTION_LENGTH, allow_empty=True)
        set_field(self, "key_spec", check_enum("key_spec", self.key_spec, KeySpec))
        set_field(self, "key_usage", check_enum("key_usage", self.key_usage, KeyUsage))
        set_field(self, "origin", check_enum("origin", self.origin, KeyOrigin))
        set_field(
            self,
            "protection_level",
            check_enum("protection_level", self.protection_level, ProtectionLevel),
        )
        check_pattern("creator", self.creator, _CREATOR, "use 1 to 64 printable ASCII characters")
        set_field(self, "created_at", check_datetime("created_at", self.created_at))
        check_key_version_id("primary_key_version_id", self.primary_key_version_id)
        _check_policy(self.policy)
        self._check_lifecycle()

    def _check_lifecycle(self) -> None:
        state = check_enum("state", self.state, KeyState)
        set_field(self, "state", state)
        delete_date = check_optional_datetime("delete_date", self.delete_date)
        set_field(self, "delete_date", delete_date)
        if state is KeyState.PENDING_DELETION and delete_date is None:
            raise ValidationError("delete_date is missing: state 'PendingDeletion' needs one")
        if state is not KeyState.PENDING_DELETION and delete_date is not None:
            raise ValidationError(
                f"delete_date is set but state is {shown(state)}: only 'PendingDeletion' "
                "has a delete date"
            )
        if not isinstance(self.deletion_protection, bool):
            raise TypeError("deletion_protection must be a bool")
        check_text(
            "deletion_protection_description",
            self.deletion_protection_description,
            MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH,
            allow_empty=True,
        )
        if self.deletion_protection and state is KeyState.PENDING_DELETION:
            raise ValidationError(
                "a key with deletion protection cannot be in state 'PendingDeletion': turn "
                "deletion protection off first"
            )
        if self.deletion_protection_description and not self.deletion_protection:
            raise ValidationError(
                "deletion_protection_description is set while deletion protection is off: "
                "give a description only when turning protection on"
            )

    @property
    def arn(self) -> str:
        """The key ARN, ``acs:kms:<region>:<account>:key/<key ID>``."""
        return key_arn(self.region, self.account_id, self.key_id)


@dataclass(frozen=True, kw_only=True)
class KeyVersion:
    """A version of a KMS key. An external key has one, and the KMI keeps the material."""

    key_id: str
    key_version_id: str
    created_at: datetime

    def __post_init__(self) -> None:
        check_key_id("key_id", self.key_id)
        check_key_version_id("key_version_id", self.key_version_id)
        set_field(self, "created_at", check_datetime("created_at", self.created_at))


# --- Listing ----------------------------------------------------------------------


def _enum_set(name: str, values: Iterable[object], enum_type: type[_E]) -> frozenset[_E]:
    if isinstance(values, str):
        raise TypeError(f"{name} must be a collection of values, not a single str")
    return frozenset(check_enum(name, value, enum_type) for value in values)


@dataclass(frozen=True, kw_only=True)
class KeyFilter:
    """The ListKeys filters. Each field lists accepted values, and an empty one accepts all.

    A key matches when every non-empty field contains its value: fields
    combine with AND, and the values of one field with OR. ``alias_names``
    matches a key that has one of these aliases. ``tag_keys`` and
    ``tag_values`` match a key that has a tag with one of these keys and one
    of these values; when both are given, one tag must match both.
    """

    states: frozenset[KeyState] = frozenset()
    specs: frozenset[KeySpec] = frozenset()
    usages: frozenset[KeyUsage] = frozenset()
    protection_levels: frozenset[ProtectionLevel] = frozenset()
    instance_ids: frozenset[str] = frozenset()
    alias_names: frozenset[str] = frozenset()
    tag_keys: frozenset[str] = frozenset()
    tag_values: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        set_field(self, "states", _enum_set("states", self.states, KeyState))
        set_field(self, "specs", _enum_set("specs", self.specs, KeySpec))
        set_field(self, "usages", _enum_set("usages", self.usages, KeyUsage))
        set_field(
            self,
            "protection_levels",
            _enum_set("protection_levels", self.protection_levels, ProtectionLevel),
        )
        if isinstance(self.instance_ids, str):
            raise TypeError("instance_ids must be a collection of IDs, not a single str")
        set_field(
            self,
            "instance_ids",
            frozenset(check_instance_id("instance_ids", value) for value in self.instance_ids),
        )
        for name, max_length in (("alias_names", 255), ("tag_keys", 128), ("tag_values", 128)):
            values = getattr(self, name)
            if isinstance(values, str):
                raise TypeError(f"{name} must be a collection of strings, not a single str")
            set_field(
                self,
                name,
                frozenset(
                    check_text(name, value, max_length, allow_empty=name == "tag_values")
                    for value in values
                ),
            )

    @classmethod
    def from_strings(
        cls,
        *,
        states: Iterable[str] = (),
        specs: Iterable[str] = (),
        usages: Iterable[str] = (),
        protection_levels: Iterable[str] = (),
        instance_ids: Iterable[str] = (),
        alias_names: Iterable[str] = (),
        tag_keys: Iterable[str] = (),
        tag_values: Iterable[str] = (),
    ) -> KeyFilter:
        """Build a filter from wire strings, such as the values of the ListKeys ``Filters``.

        Raises ValidationError naming the field and the allowed values.
        """
        if isinstance(instance_ids, str):
            raise TypeError("instance_ids must be a collection of IDs, not a single str")
        return cls(
            states=_enum_set("states", states, KeyState),
            specs=_enum_set("specs", specs, KeySpec),
            usages=_enum_set("usages", usages, KeyUsage),
            protection_levels=_enum_set("protection_levels", protection_levels, ProtectionLevel),
            instance_ids=frozenset(instance_ids),
            alias_names=frozenset(alias_names),
            tag_keys=frozenset(tag_keys),
            tag_values=frozenset(tag_values),
        )


@dataclass(frozen=True)
class PageRequest:
    """One page of a list: ``number`` counts from 1, and ``size`` is 1 to MAX_PAGE_SIZE rows."""

    number: int = 1
    size: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise ValidationError(f"invalid page number {shown(self.number)}: use 1 or more")
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 1 <= self.size <= MAX_PAGE_SIZE
        ):
            raise ValidationError(f"invalid page size {shown(self.size)}: use 1 to {MAX_PAGE_SIZE}")

    @property
    def offset(self) -> int:
        """The number of rows before this page."""
        return (self.number - 1) * self.size


_T = TypeVar("_T")


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a list, and the number of rows in the whole list."""

    items: tuple[_T, ...]
    number: int
    size: int
    total_count: int
