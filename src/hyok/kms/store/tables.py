"""The tables of the KMS database, as SQLAlchemy Core definitions.

The migrations create the schema. These definitions must match the latest
revision, and a test compares the two on SQLite and PostgreSQL. Every
constraint has an explicit name, so that an error can name it and a later
revision can drop it on both databases.

The database enforces every invariant that it can check on one row:

- primary keys, foreign keys and uniqueness;
- NOT NULL on every required column;
- CHECK constraints on every enumerated column (the values of the enums in
  :mod:`hyok.kms.domain.models`), on the shape of every ID, on text lengths
  (SQLite does not enforce VARCHAR lengths), and on the rules that tie
  columns together, such as "a delete date exactly when PendingDeletion".

CHECK constraints use only SQL that both SQLite and PostgreSQL run:
``length``, ``substr``, ``lower``, ``ltrim(text, characters)``, ``IN`` and
boolean operators. ``ltrim(x, chars) = ''`` means "x contains only these characters".

Stored secrets are AES-256-GCM ciphertexts from :mod:`hyok.kms.store.secretbox`.
Datetimes are stored in UTC: as ``timestamp with time zone`` on PostgreSQL,
and as ISO text without an offset on SQLite (see :class:`UtcDateTime`).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from hyok.kms.domain.aliases import ALIAS_PREFIX, MAX_ALIAS_NAME_LENGTH, RESERVED_ALIAS_PREFIX
from hyok.kms.domain.models import (
    MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_ERROR_DETAIL_LENGTH,
    MAX_POLICY_BYTES,
    AccessKeyStatus,
    Connectivity,
    InstanceErrorReason,
    InstanceStatus,
    KeyOrigin,
    KeySpec,
    KeyState,
    KeyUsage,
    ProtectionLevel,
)
from hyok.kms.domain.policy_document import MAX_IDENTITY_POLICY_LENGTH
from hyok.kms.domain.ram import (
    MAX_COMMENTS_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_POLICY_DESCRIPTION_LENGTH,
    MAX_ROLE_DESCRIPTION_LENGTH,
    MAX_ROLE_SESSION_DURATION,
    MIN_ROLE_SESSION_DURATION,
)
from hyok.kms.domain.share_quota import MAX_SHARE_QUOTA
from hyok.kms.domain.trust_policy import MAX_TRUST_POLICY_LENGTH

__all__ = [
    "CONSTRAINT_RULES",
    "FOREIGN_KEY_TARGETS",
    "SQLITE_UNIQUE_COLUMNS",
    "UtcDateTime",
    "access_keys",
    "account_console_passwords",
    "accounts",
    "aliases",
    "console_sessions",
    "instance_quota_releases",
    "instance_share_quotas",
    "instance_shares",
    "instances",
    "key_grant_accounts",
    "key_resources",
    "key_tags",
    "key_usage",
    "key_versions",
    "keys",
    "metadata",
    "ram_login_profiles",
    "ram_policies",
    "ram_role_policies",
    "ram_roles",
    "ram_user_policies",
    "ram_users",
    "signature_nonces",
    "sts_credentials",
]

LOWER_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
DIGITS: Final = "0123456789"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC and returned in UTC.

    Binding a naive datetime raises ValueError. SQLite has no datetime type,
    so SQLAlchemy stores text with microseconds, which sorts and compares
    correctly because every value is in UTC.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("the store accepts only timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: list[str]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


def _values(enum_type: type[enum.StrEnum]) -> list[str]:
    return [str(member) for member in enum_type]


CONSTRAINT_RULES: dict[str, str] = {}
"""The rule that each named constraint enforces, for error messages."""

FOREIGN_KEY_TARGETS: dict[str, str] = {}
"""The noun of the row that each foreign key refers to, such as ``"instance"``."""

SQLITE_UNIQUE_COLUMNS: dict[str, str] = {}
"""Constraint names by SQLite's description of a unique failure (``"keys.key_id"``)."""


def _check(name: str, sql: str, rule: str) -> CheckConstraint:
    CONSTRAINT_RULES[name] = rule
    return CheckConstraint(sql, name=name)


def _unique(table: str, name: str, columns: list[str], noun: str) -> None:
    CONSTRAINT_RULES[name] = noun
    SQLITE_UNIQUE_COLUMNS[", ".join(f"{table}.{column}" for column in columns)] = name


def _primary_key(table: str, columns: list[str], noun: str) -> PrimaryKeyConstraint:
    name = f"pk_{table}"
    _unique(table, name, columns, noun)
    return PrimaryKeyConstraint(*columns, name=name)


def _unique_constraint(table: str, name: str, columns: list[str], noun: str) -> UniqueConstraint:
    _unique(table, name, columns, noun)
    return UniqueConstraint(*columns, name=name)


def _foreign_key(
    name: str,
    columns: list[str],
    targets: list[str],
    noun: str,
    *,
    ondelete: str | None = None,
    deferrable: bool | None = None,
    initially: str | None = None,
    use_alter: bool = False,
) -> ForeignKeyConstraint:
    FOREIGN_KEY_TARGETS[name] = noun
    CONSTRAINT_RULES[name] = f"the {noun} must exist"
    return ForeignKeyConstraint(
        columns,
        targets,
        name=name,
        ondelete=ondelete,
        deferrable=deferrable,
        initially=initially,
        use_alter=use_alter,
    )


def _length(column: str, minimum: int, maximum: int) -> str:
    return f"length({column}) BETWEEN {minimum} AND {maximum}"


def _only(expression: str, characters: str) -> str:
    return f"ltrim({expression}, '{characters}') = ''"


def _prefixed_id(column: str, prefix: str, maximum: int) -> str:
    start = len(prefix) + 1
    return (
        f"substr({column}, 1, {len(prefix)}) = '{prefix}' AND "
        f"{_length(column, start, maximum)} AND {_only(f'substr({column}, {start})', LOWER_ALNUM)}"
    )


def _account_id(column: str) -> str:
    return f"{_length(column, 12, 16)} AND {_only(column, DIGITS)}"


def _region(column: str) -> str:
    return f"{_length(column, 1, 64)} AND {_only(column, LOWER_ALNUM + '-')}"


metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("accounts", ["account_id"], "an account with this account ID"),
    _check(
        "ck_accounts_account_id",
        _account_id("account_id"),
        "an account ID must have 12 to 16 digits",
    ),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("secret_ciphertext", LargeBinary(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # The RAM user that owns the AccessKey, or NULL for an AccessKey of the account root.
    Column("user_name", String(64), nullable=True),
    _primary_key("access_keys", ["access_key_id"], "an AccessKey with this AccessKey ID"),
    _foreign_key("fk_access_keys_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _foreign_key(
        "fk_access_keys_user",
        ["account_id", "user_name"],
        ["ram_users.account_id", "ram_users.user_name"],
        "RAM user",
    ),
    _check(
        "ck_access_keys_access_key_id",
        f"{_length('access_key_id', 16, 128)} AND {_only('access_key_id', ALNUM)}",
        "an AccessKey ID must have 16 to 128 letters and digits",
    ),
    _check(
        "ck_access_keys_status",
        _in("status", _values(AccessKeyStatus)),
        "the AccessKey status must be one of " + ", ".join(_values(AccessKeyStatus)),
    ),
    Index("ix_access_keys_account_id", "account_id"),
    Index("ix_access_keys_account_id_user_name", "account_id", "user_name"),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("region", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("connectivity", String(16), nullable=False),
    # The four proxy columns are all set or all NULL (ck_instances_proxy_configuration).
    Column("proxy_endpoint", String(2048), nullable=True),
    Column("proxy_uri_path", String(128), nullable=True),
    Column("vpc_endpoint_service", String(255), nullable=True),
    Column("proxy_access_key_id", String(30), nullable=True),
    Column("proxy_secret_ciphertext", LargeBinary(), nullable=True),
    Column("tls_fingerprint", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("error_reason", String(32), nullable=True),
    Column("error_detail", String(MAX_ERROR_DETAIL_LENGTH), nullable=False),
    Column("last_health_check_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("instances", ["instance_id"], "an instance with this instance ID"),
    _foreign_key("fk_instances_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _check(
        "ck_instances_instance_id",
        _prefixed_id("instance_id", "kst-", 64),
        "an instance ID must be 'kst-' followed by 1 to 60 lower-case letters and digits",
    ),
    _check(
        "ck_instances_region",
        _region("region"),
        "the region must have 1 to 64 characters from lower-case letters, digits and '-'",
    ),
    _check("ck_instances_name", _length("name", 1, 128), "the name must have 1 to 128 characters"),
    _check(
        "ck_instances_connectivity",
        _in("connectivity", _values(Connectivity)),
        "connectivity must be one of " + ", ".join(_values(Connectivity)),
    ),
    _check(
        "ck_instances_proxy_configuration",
        "(proxy_endpoint IS NOT NULL AND proxy_uri_path IS NOT NULL "
        "AND proxy_access_key_id IS NOT NULL AND proxy_secret_ciphertext IS NOT NULL) "
        "OR (proxy_endpoint IS NULL AND proxy_uri_path IS NULL "
        "AND proxy_access_key_id IS NULL AND proxy_secret_ciphertext IS NULL "
        "AND vpc_endpoint_service IS NULL AND tls_fingerprint IS NULL "
        "AND status IN ('Uninitialized', 'Disconnected'))",
        "the proxy endpoint, URI path, access key ID and secret are all set or all empty, and "
        "an instance without them has no VPC endpoint service or TLS fingerprint and is "
        "Uninitialized or Disconnected",
    ),
    _check(
        "ck_instances_proxy_endpoint",
        f"substr(proxy_endpoint, 1, 8) = 'https://' AND {_length('proxy_endpoint', 9, 2048)}",
        "the proxy endpoint must be an https URL of at most 2048 characters",
    ),
    _check(
        "ck_instances_proxy_uri_path",
        f"{_length('proxy_uri_path', 11, 128)} AND "
        "substr(proxy_uri_path, length(proxy_uri_path) - 10) = '/kms/xks/v1'",
        "the proxy URI path must end in /kms/xks/v1 and have at most 128 characters",
    ),
    _check(
        "ck_instances_vpc_endpoint_service",
        "(connectivity = 'vpc' AND vpc_endpoint_service IS NOT NULL "
        f"AND {_length('vpc_endpoint_service', 1, 255)}) "
        "OR (connectivity <> 'vpc' AND vpc_endpoint_service IS NULL)",
        "a VPC endpoint service name is required with connectivity 'vpc' and not allowed otherwise",
    ),
    _check(
        "ck_instances_proxy_access_key_id",
        f"{_length('proxy_access_key_id', 20, 30)} AND "
        f"{_only('proxy_access_key_id', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}",
        "the proxy access key ID must have 20 to 30 characters from A-Z and 2-7",
    ),
    _check(
        "ck_instances_tls_fingerprint",
        f"length(tls_fingerprint) = 64 AND {_only('tls_fingerprint', '0123456789abcdef')}",
        "the TLS fingerprint must be 64 lower-case hex digits",
    ),
    _check(
        "ck_instances_status",
        _in("status", _values(InstanceStatus)),
        "the instance status must be one of " + ", ".join(_values(InstanceStatus)),
    ),
    _check(
        "ck_instances_error_reason",
        _in("error_reason", _values(InstanceErrorReason)),
        "the error reason must be one of " + ", ".join(_values(InstanceErrorReason)),
    ),
    _check(
        "ck_instances_error_reason_status",
        "(status = 'Error' AND error_reason IS NOT NULL) OR status = 'Disconnected' "
        "OR (status NOT IN ('Error', 'Disconnected') AND error_reason IS NULL)",
        "status 'Error' needs an error reason, and only 'Error' and 'Disconnected' may have one",
    ),
    _check(
        "ck_instances_error_detail",
        f"length(error_detail) <= {MAX_ERROR_DETAIL_LENGTH} "
        "AND (error_detail = '' OR error_reason IS NOT NULL)",
        f"the error detail must have at most {MAX_ERROR_DETAIL_LENGTH} characters and needs "
        "an error reason",
    ),
    Index("ix_instances_account_id_region", "account_id", "region"),
)

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(128), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("region", String(64), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("external_key_id", String(128), nullable=False),
    Column("description", Text(), nullable=False),
    Column("state", String(32), nullable=False),
    Column("key_spec", String(32), nullable=False),
    Column("key_usage", String(32), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("protection_level", String(16), nullable=False),
    Column("creator", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("primary_key_version_id", String(36), nullable=False),
    Column(
        "deletion_protection",
        Boolean(create_constraint=True, name="ck_keys_deletion_protection_boolean"),
        nullable=False,
    ),
    Column(
        "deletion_protection_description",
        String(MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH),
        nullable=False,
    ),
    Column("delete_date", UtcDateTime(), nullable=True),
    Column("policy", Text(), nullable=False),
    _primary_key("keys", ["key_id"], "a key with this key ID"),
    _unique_constraint(
        "keys",
        "uq_keys_primary_key_version_id",
        ["primary_key_version_id"],
        "a key with this primary key version ID",
    ),
    _foreign_key("fk_keys_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _foreign_key("fk_keys_instance_id", ["instance_id"], ["instances.instance_id"], "instance"),
    # The key and its first version refer to each other, so this constraint is
    # checked at commit, after both rows are written.
    _foreign_key(
        "fk_keys_primary_key_version",
        ["key_id", "primary_key_version_id"],
        ["key_versions.key_id", "key_versions.key_version_id"],
        "primary key version",
        deferrable=True,
        initially="DEFERRED",
        use_alter=True,
    ),
    _check(
        "ck_keys_key_id",
        _prefixed_id("key_id", "key-", 128),
        "a key ID must be 'key-' followed by 1 to 124 lower-case letters and digits",
    ),
    _check(
        "ck_keys_region",
        _region("region"),
        "the region must have 1 to 64 characters from lower-case letters, digits and '-'",
    ),
    _check(
        "ck_keys_external_key_id",
        f"{_length('external_key_id', 1, 128)} AND {_only('external_key_id', ALNUM + '._-')}",
        "the external key ID must have 1 to 128 characters from letters, digits, '.', '_' and '-'",
    ),
    _check(
        "ck_keys_description",
        f"length(description) <= {MAX_DESCRIPTION_LENGTH}",
        f"the description must have at most {MAX_DESCRIPTION_LENGTH} characters",
    ),
    _check(
        "ck_keys_state",
        _in("state", _values(KeyState)),
        "the key state must be one of " + ", ".join(_values(KeyState)),
    ),
    _check(
        "ck_keys_key_spec",
        _in("key_spec", _values(KeySpec)),
        "the key spec must be one of " + ", ".join(_values(KeySpec)),
    ),
    _check(
        "ck_keys_key_usage",
        _in("key_usage", _values(KeyUsage)),
        "the key usage must be one of " + ", ".join(_values(KeyUsage)),
    ),
    _check(
        "ck_keys_origin",
        _in("origin", _values(KeyOrigin)),
        "the key origin must be one of " + ", ".join(_values(KeyOrigin)),
    ),
    _check(
        "ck_keys_protection_level",
        _in("protection_level", _values(ProtectionLevel)),
        "the protection level must be one of " + ", ".join(_values(ProtectionLevel)),
    ),
    _check(
        "ck_keys_creator", _length("creator", 1, 64), "the creator must have 1 to 64 characters"
    ),
    _check(
        "ck_keys_primary_key_version_id",
        f"length(primary_key_version_id) = 36 AND "
        f"{_only('primary_key_version_id', '0123456789abcdef-')}",
        "the primary key version ID must be a UUID in lower-case hex",
    ),
    _check(
        "ck_keys_deletion_protection_description",
        f"length(deletion_protection_description) <= {MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH}"
        " AND (deletion_protection OR deletion_protection_description = '')",
        "a deletion protection description is allowed only while deletion protection is on, "
        f"with at most {MAX_DELETION_PROTECTION_DESCRIPTION_LENGTH} characters",
    ),
    _check(
        "ck_keys_delete_date",
        "(state = 'PendingDeletion' AND delete_date IS NOT NULL) "
        "OR (state <> 'PendingDeletion' AND delete_date IS NULL)",
        "a key has a delete date exactly when its state is PendingDeletion",
    ),
    _check(
        "ck_keys_deletion_protection_state",
        "NOT (deletion_protection AND state = 'PendingDeletion')",
        "a key with deletion protection cannot be PendingDeletion; turn protection off first",
    ),
    _check(
        "ck_keys_policy",
        f"length(policy) BETWEEN 2 AND {MAX_POLICY_BYTES}",
        f"the policy must be a JSON object of at most {MAX_POLICY_BYTES} characters",
    ),
    Index("ix_keys_account_id_region_created_at", "account_id", "region", "created_at", "key_id"),
    Index("ix_keys_instance_id", "instance_id"),
)

key_versions = Table(
    "key_versions",
    metadata,
    Column("key_version_id", String(36), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("key_versions", ["key_version_id"], "a key version with this key version ID"),
    _unique_constraint(
        "key_versions",
        "uq_key_versions_key_id_key_version_id",
        ["key_id", "key_version_id"],
        "this key version of this key",
    ),
    _foreign_key("fk_key_versions_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"),
    _check(
        "ck_key_versions_key_version_id",
        f"length(key_version_id) = 36 AND {_only('key_version_id', '0123456789abcdef-')}",
        "a key version ID must be a UUID in lower-case hex",
    ),
)

signature_nonces = Table(
    "signature_nonces",
    metadata,
    Column("access_key_id", String(128), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    _primary_key("signature_nonces", ["access_key_id", "nonce"], "this nonce of this AccessKey"),
    Index("ix_signature_nonces_expires_at", "expires_at"),
)

key_tags = Table(
    "key_tags",
    metadata,
    Column("key_id", String(128), nullable=False),
    Column("tag_key", String(128), nullable=False),
    Column("tag_value", String(128), nullable=False),
    _primary_key("key_tags", ["key_id", "tag_key"], "a tag with this tag key on this key"),
    _foreign_key("fk_key_tags_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"),
    _check(
        "ck_key_tags_tag_key",
        _length("tag_key", 1, 128),
        "a tag key must have 1 to 128 characters",
    ),
    _check(
        "ck_key_tags_tag_value",
        "length(tag_value) <= 128",
        "a tag value must have at most 128 characters",
    ),
)


# --- Key associations ---------------------------------------------------------------------

# Who used each key for cryptography: one row per principal ARN and
# via-service, with the first and last use and the number of uses.
key_usage = Table(
    "key_usage",
    metadata,
    Column("key_id", String(128), nullable=False),
    Column("principal", String(512), nullable=False),
    Column("via_service", String(64), nullable=False),
    Column("first_used_at", UtcDateTime(), nullable=False),
    Column("last_used_at", UtcDateTime(), nullable=False),
    Column("use_count", BigInteger(), nullable=False),
    _primary_key(
        "key_usage",
        ["key_id", "principal", "via_service"],
        "a usage row of this principal and service for this key",
    ),
    _foreign_key("fk_key_usage_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"),
    _check(
        "ck_key_usage_use_count",
        "use_count >= 1",
        "a usage row counts at least one use",
    ),
)

# Resources that an integrating service registered as using a key.
key_resources = Table(
    "key_resources",
    metadata,
    Column("key_id", String(128), nullable=False),
    Column("service", String(64), nullable=False),
    Column("resource_id", String(512), nullable=False),
    Column("registered_by", String(512), nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
    _primary_key(
        "key_resources",
        ["key_id", "service", "resource_id"],
        "this resource of this service registered for this key",
    ),
    _foreign_key(
        "fk_key_resources_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"
    ),
    _check(
        "ck_key_resources_service",
        _length("service", 1, 64),
        "a service name must have 1 to 64 characters",
    ),
    _check(
        "ck_key_resources_resource_id",
        _length("resource_id", 1, 512),
        "a resource ID must have 1 to 512 characters",
    ),
)


# --- Aliases ------------------------------------------------------------------------------

_ALIAS_START: Final = len(ALIAS_PREFIX) + 1

# The primary key makes an alias name unique per account and region, also
# under concurrent CreateAlias requests. Deleting a key deletes its aliases.
aliases = Table(
    "aliases",
    metadata,
    Column("account_id", String(16), nullable=False),
    Column("region", String(64), nullable=False),
    Column("alias_name", String(MAX_ALIAS_NAME_LENGTH), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    _primary_key(
        "aliases",
        ["account_id", "region", "alias_name"],
        "an alias with this name in this account and region",
    ),
    _foreign_key("fk_aliases_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _foreign_key("fk_aliases_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"),
    _check(
        "ck_aliases_account_id",
        _account_id("account_id"),
        "an account ID must have 12 to 16 digits",
    ),
    _check(
        "ck_aliases_region",
        _region("region"),
        "the region must have 1 to 64 characters from lower-case letters, digits and '-'",
    ),
    _check(
        "ck_aliases_alias_name",
        f"substr(alias_name, 1, {len(ALIAS_PREFIX)}) = '{ALIAS_PREFIX}' AND "
        f"{_length('alias_name', _ALIAS_START, MAX_ALIAS_NAME_LENGTH)} AND "
        f"{_only(f'substr(alias_name, {_ALIAS_START})', ALNUM + '_/-')} AND "
        f"lower(substr(alias_name, 1, {len(RESERVED_ALIAS_PREFIX)})) <> '{RESERVED_ALIAS_PREFIX}'",
        f"an alias name must be 'alias/' followed by letters, digits, '_', '-' or '/', at most "
        f"{MAX_ALIAS_NAME_LENGTH} characters in all, and must not start with 'alias/acs'",
    ),
    Index("ix_aliases_key_id", "key_id"),
)

# --- Shared instances and the access management quota ---------------------------------

instance_shares = Table(
    "instance_shares",
    metadata,
    Column("instance_id", String(64), nullable=False),
    # The member account that the owner shares the instance with.
    Column("account_id", String(16), nullable=False),
    Column("shared_at", UtcDateTime(), nullable=False),
    _primary_key(
        "instance_shares",
        ["instance_id", "account_id"],
        "a share of this instance with this account",
    ),
    _foreign_key(
        "fk_instance_shares_instance_id",
        ["instance_id"],
        ["instances.instance_id"],
        "instance",
        ondelete="CASCADE",
    ),
    _foreign_key(
        "fk_instance_shares_account_id", ["account_id"], ["accounts.account_id"], "account"
    ),
    Index("ix_instance_shares_account_id", "account_id"),
)

instance_share_quotas = Table(
    "instance_share_quotas",
    metadata,
    Column("instance_id", String(64), nullable=False),
    Column("share_quota", Integer(), nullable=False),
    _primary_key("instance_share_quotas", ["instance_id"], "a quota of this instance"),
    _foreign_key(
        "fk_instance_share_quotas_instance_id",
        ["instance_id"],
        ["instances.instance_id"],
        "instance",
        ondelete="CASCADE",
    ),
    _check(
        "ck_instance_share_quotas_share_quota",
        f"share_quota BETWEEN 0 AND {MAX_SHARE_QUOTA}",
        f"the access management quota must be 0 to {MAX_SHARE_QUOTA}",
    ),
)

# One row for each foreign account that a key's policy grants (see
# hyok.kms.domain.share_quota). instance_id repeats the key's instance, so
# that counting the accounts of an instance reads one index.
key_grant_accounts = Table(
    "key_grant_accounts",
    metadata,
    Column("key_id", String(128), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("instance_id", String(64), nullable=False),
    _primary_key(
        "key_grant_accounts", ["key_id", "account_id"], "a grant of this key to this account"
    ),
    _foreign_key(
        "fk_key_grant_accounts_key_id", ["key_id"], ["keys.key_id"], "key", ondelete="CASCADE"
    ),
    _foreign_key(
        "fk_key_grant_accounts_instance_id",
        ["instance_id"],
        ["instances.instance_id"],
        "instance",
        ondelete="CASCADE",
    ),
    _check(
        "ck_key_grant_accounts_account_id",
        _account_id("account_id"),
        "an account ID must have 12 to 16 digits",
    ),
    Index("ix_key_grant_accounts_instance_id_account_id", "instance_id", "account_id"),
)

# A foreign account whose last grant in an instance was revoked, and when:
# it keeps its unit of the quota for 5 minutes after revoked_at.
instance_quota_releases = Table(
    "instance_quota_releases",
    metadata,
    Column("instance_id", String(64), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=False),
    _primary_key(
        "instance_quota_releases",
        ["instance_id", "account_id"],
        "a revoked grant of this instance to this account",
    ),
    _foreign_key(
        "fk_instance_quota_releases_instance_id",
        ["instance_id"],
        ["instances.instance_id"],
        "instance",
        ondelete="CASCADE",
    ),
    _check(
        "ck_instance_quota_releases_account_id",
        _account_id("account_id"),
        "an account ID must have 12 to 16 digits",
    ),
)


# --- RAM identities and STS credentials ------------------------------------------------

_USER_NAME_RULE = "a RAM user name must have 1 to 64 letters, digits, '.', '_' or '-'"
_ROLE_NAME_RULE = "a RAM role name must have 1 to 64 letters, digits, '.' or '-'"
_POLICY_NAME_RULE = "a policy name must have 1 to 128 letters, digits or '-'"


def _numeric_id(column: str) -> str:
    return f"{_length(column, 15, 19)} AND {_only(column, DIGITS)}"


def _user_name(column: str) -> str:
    return f"{_length(column, 1, 64)} AND {_only(column, ALNUM + '._-')}"


def _role_name(column: str) -> str:
    return f"{_length(column, 1, 64)} AND {_only(column, ALNUM + '.-')}"


def _policy_name(column: str) -> str:
    return f"{_length(column, 1, 128)} AND {_only(column, ALNUM + '-')}"


ram_users = Table(
    "ram_users",
    metadata,
    Column("user_id", String(19), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("display_name", String(MAX_DISPLAY_NAME_LENGTH), nullable=False),
    Column("comments", String(MAX_COMMENTS_LENGTH), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("ram_users", ["user_id"], "a RAM user with this user ID"),
    _unique_constraint(
        "ram_users",
        "uq_ram_users_account_id_user_name",
        ["account_id", "user_name"],
        "a RAM user with this name in this account",
    ),
    _foreign_key("fk_ram_users_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _check("ck_ram_users_user_id", _numeric_id("user_id"), "a user ID must have 15 to 19 digits"),
    _check("ck_ram_users_user_name", _user_name("user_name"), _USER_NAME_RULE),
    _check(
        "ck_ram_users_display_name",
        f"length(display_name) <= {MAX_DISPLAY_NAME_LENGTH}",
        f"the display name must have at most {MAX_DISPLAY_NAME_LENGTH} characters",
    ),
    _check(
        "ck_ram_users_comments",
        f"length(comments) <= {MAX_COMMENTS_LENGTH}",
        f"the comments must have at most {MAX_COMMENTS_LENGTH} characters",
    ),
)

ram_roles = Table(
    "ram_roles",
    metadata,
    Column("role_id", String(19), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("role_name", String(64), nullable=False),
    Column("description", String(MAX_ROLE_DESCRIPTION_LENGTH), nullable=False),
    Column("trust_policy", Text(), nullable=False),
    Column("max_session_duration", Integer(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("ram_roles", ["role_id"], "a RAM role with this role ID"),
    _unique_constraint(
        "ram_roles",
        "uq_ram_roles_account_id_role_name",
        ["account_id", "role_name"],
        "a RAM role with this name in this account",
    ),
    _foreign_key("fk_ram_roles_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _check("ck_ram_roles_role_id", _numeric_id("role_id"), "a role ID must have 15 to 19 digits"),
    _check("ck_ram_roles_role_name", _role_name("role_name"), _ROLE_NAME_RULE),
    _check(
        "ck_ram_roles_description",
        f"length(description) <= {MAX_ROLE_DESCRIPTION_LENGTH}",
        f"the description must have at most {MAX_ROLE_DESCRIPTION_LENGTH} characters",
    ),
    _check(
        "ck_ram_roles_trust_policy",
        f"length(trust_policy) BETWEEN 2 AND {MAX_TRUST_POLICY_LENGTH}",
        f"the trust policy must be a JSON object of at most {MAX_TRUST_POLICY_LENGTH} characters",
    ),
    _check(
        "ck_ram_roles_max_session_duration",
        f"max_session_duration BETWEEN {MIN_ROLE_SESSION_DURATION} AND {MAX_ROLE_SESSION_DURATION}",
        f"the maximum session duration must be {MIN_ROLE_SESSION_DURATION} to "
        f"{MAX_ROLE_SESSION_DURATION} seconds",
    ),
)

ram_policies = Table(
    "ram_policies",
    metadata,
    Column("account_id", String(16), nullable=False),
    Column("policy_name", String(128), nullable=False),
    Column("description", String(MAX_POLICY_DESCRIPTION_LENGTH), nullable=False),
    Column("document", Text(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key(
        "ram_policies", ["account_id", "policy_name"], "a policy with this name in this account"
    ),
    _foreign_key("fk_ram_policies_account_id", ["account_id"], ["accounts.account_id"], "account"),
    _check("ck_ram_policies_policy_name", _policy_name("policy_name"), _POLICY_NAME_RULE),
    _check(
        "ck_ram_policies_description",
        f"length(description) <= {MAX_POLICY_DESCRIPTION_LENGTH}",
        f"the description must have at most {MAX_POLICY_DESCRIPTION_LENGTH} characters",
    ),
    _check(
        "ck_ram_policies_document",
        f"length(document) BETWEEN 2 AND {MAX_IDENTITY_POLICY_LENGTH}",
        f"the policy document must be a JSON object of at most {MAX_IDENTITY_POLICY_LENGTH} "
        "characters",
    ),
)


def _attachments(kind: str, name_column: str, name_check: str, rule: str) -> Table:
    table = f"ram_{kind}_policies"
    return Table(
        table,
        metadata,
        Column("account_id", String(16), nullable=False),
        Column(name_column, String(64), nullable=False),
        Column("policy_name", String(128), nullable=False),
        Column("attached_at", UtcDateTime(), nullable=False),
        _primary_key(
            table,
            ["account_id", name_column, "policy_name"],
            f"this policy attached to this RAM {kind}",
        ),
        _foreign_key(
            f"fk_{table}_{kind}",
            ["account_id", name_column],
            [f"ram_{kind}s.account_id", f"ram_{kind}s.{name_column}"],
            f"RAM {kind}",
        ),
        _foreign_key(
            f"fk_{table}_policy",
            ["account_id", "policy_name"],
            ["ram_policies.account_id", "ram_policies.policy_name"],
            "policy",
        ),
        _check(f"ck_{table}_{name_column}", name_check, rule),
        Index(f"ix_{table}_account_id_policy_name", "account_id", "policy_name"),
    )


ram_user_policies = _attachments("user", "user_name", _user_name("user_name"), _USER_NAME_RULE)
ram_role_policies = _attachments("role", "role_name", _role_name("role_name"), _ROLE_NAME_RULE)

sts_credentials = Table(
    "sts_credentials",
    metadata,
    Column("access_key_id", String(128), nullable=False),
    Column("account_id", String(16), nullable=False),
    Column("role_name", String(64), nullable=False),
    Column("session_name", String(64), nullable=False),
    Column("secret_ciphertext", LargeBinary(), nullable=False),
    # The SHA-256 of the security token: the token itself is never stored.
    Column("token_hash", LargeBinary(), nullable=False),
    Column("source_arn", String(256), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column(
        "revoked",
        Boolean(create_constraint=True, name="ck_sts_credentials_revoked_boolean"),
        nullable=False,
    ),
    Column("created_at", UtcDateTime(), nullable=False),
    _primary_key("sts_credentials", ["access_key_id"], "STS credentials with this AccessKey ID"),
    # Deleting a role ends its sessions.
    _foreign_key(
        "fk_sts_credentials_role",
        ["account_id", "role_name"],
        ["ram_roles.account_id", "ram_roles.role_name"],
        "RAM role",
        ondelete="CASCADE",
    ),
    _check(
        "ck_sts_credentials_access_key_id",
        "substr(access_key_id, 1, 4) = 'STS.' AND length(access_key_id) BETWEEN 20 AND 128 "
        f"AND {_only('substr(access_key_id, 5)', ALNUM)}",
        "an STS AccessKey ID must be 'STS.' followed by 16 to 124 letters and digits",
    ),
    _check(
        "ck_sts_credentials_session_name",
        f"{_length('session_name', 2, 64)} AND {_only('session_name', ALNUM + '.@_-')}",
        "a role session name must have 2 to 64 letters, digits, '.', '@', '_' or '-'",
    ),
    _check(
        "ck_sts_credentials_token_hash",
        "length(token_hash) = 32",
        "the token hash must be a 32-byte SHA-256",
    ),
    _check(
        "ck_sts_credentials_source_arn",
        _length("source_arn", 1, 256),
        "the source ARN must have 1 to 256 characters",
    ),
    Index("ix_sts_credentials_account_id_role_name", "account_id", "role_name"),
    Index("ix_sts_credentials_expires_at", "expires_at"),
)

# A PHC string "$scrypt$ln=..,r=..,p=..$<salt>$<hash>" from hyok.kms.domain.passwords.
_HASH_FORMAT_CHECK: Final = (
    f"substr(password_hash, 1, 8) = '$scrypt$' AND {_length('password_hash', 9, 256)}"
)
_HASH_FORMAT_RULE: Final = "a password hash must be a scrypt PHC string of at most 256 characters"

ram_login_profiles = Table(
    "ram_login_profiles",
    metadata,
    Column("account_id", String(16), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column(
        "password_reset_required",
        Boolean(
            create_constraint=True, name="ck_ram_login_profiles_password_reset_required_boolean"
        ),
        nullable=False,
    ),
    Column(
        "mfa_bind_required",
        Boolean(create_constraint=True, name="ck_ram_login_profiles_mfa_bind_required_boolean"),
        nullable=False,
    ),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    _primary_key(
        "ram_login_profiles", ["account_id", "user_name"], "a login profile for this RAM user"
    ),
    # No ON DELETE CASCADE: DeleteUser rejects a user that still has a login profile.
    _foreign_key(
        "fk_ram_login_profiles_user",
        ["account_id", "user_name"],
        ["ram_users.account_id", "ram_users.user_name"],
        "RAM user",
    ),
    _check("ck_ram_login_profiles_user_name", _user_name("user_name"), _USER_NAME_RULE),
    _check("ck_ram_login_profiles_password_hash", _HASH_FORMAT_CHECK, _HASH_FORMAT_RULE),
    _check(
        "ck_ram_login_profiles_mfa_bind_required",
        "NOT mfa_bind_required",
        "MFABindRequired must be false, because hyok has no MFA",
    ),
)

# The console password of an account root, in a table of its own so that the
# hash is read only at sign-in and SQLite needs no rebuild of accounts.
account_console_passwords = Table(
    "account_console_passwords",
    metadata,
    Column("account_id", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    _primary_key(
        "account_console_passwords", ["account_id"], "a console password for this account"
    ),
    _foreign_key(
        "fk_account_console_passwords_account_id",
        ["account_id"],
        ["accounts.account_id"],
        "account",
    ),
    _check(
        "ck_account_console_passwords_password_hash", _HASH_FORMAT_CHECK, _HASH_FORMAT_RULE
    ),
)

# Web console sessions: the SHA-256 of the session token, never the token.
# Deleting an account or a RAM user ends its sessions.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", LargeBinary(), nullable=False),
    Column("account_id", String(16), nullable=False),
    # NULL for the account root.
    Column("user_name", String(64), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    _primary_key("console_sessions", ["token_hash"], "a console session with this token"),
    _foreign_key(
        "fk_console_sessions_account_id",
        ["account_id"],
        ["accounts.account_id"],
        "account",
        ondelete="CASCADE",
    ),
    _foreign_key(
        "fk_console_sessions_user",
        ["account_id", "user_name"],
        ["ram_users.account_id", "ram_users.user_name"],
        "RAM user",
        ondelete="CASCADE",
    ),
    _check(
        "ck_console_sessions_token_hash",
        "length(token_hash) = 32",
        "the session token hash must be a 32-byte SHA-256",
    ),
    _check(
        "ck_console_sessions_times",
        "last_seen_at >= created_at AND expires_at > created_at",
        "a session must be last seen after it began and end after it began",
    ),
    Index("ix_console_sessions_expires_at", "expires_at"),
    Index("ix_console_sessions_account_id_user_name", "account_id", "user_name"),
)
