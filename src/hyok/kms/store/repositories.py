"""Repositories of the KMS records: accounts, AccessKeys, instances, keys and key versions.

The RAM identities have theirs in :mod:`hyok.kms.store.ram_repositories`,
and key aliases in :mod:`hyok.kms.store.aliases`.

:class:`KmsStore` opens sessions. A :class:`StoreSession` is one transaction
and carries one repository per record type, so several changes commit or
roll back together::

    store = KmsStore(database, SecretBox(root_key))
    with store.session() as session:
        session.keys.create(key, version)
        instance = session.instances.get(key.instance_id)

Background jobs that several KMS nodes run, such as the proxy health
checks, take :meth:`KmsStore.try_job_lock` so that one node runs each round.

Conventions of every repository:

- ``get`` returns None when the row does not exist.
- ``update_*``, ``set_*`` and ``delete`` raise :class:`RowNotFoundError`
  when the row does not exist, and :class:`StaleStateError` when the caller
  passed expected states and the row is in another one. They lock the row
  (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions hold the
  database lock), build the changed record, whose constructor checks every
  rule and raises ValidationError, then write it and return it.
- ``list`` returns a :class:`Page` in a stable order: creation time, then ID.
- Each write runs in a savepoint. One that breaks a constraint raises an
  :class:`IntegrityViolationError` subclass, leaves nothing behind, and
  leaves the session usable.
- Records come back as :mod:`hyok.kms.domain.models` objects, with secrets
  decrypted into :class:`Secret` values. A secret that cannot be decrypted
  raises a :class:`SecretBoxError` subclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain.models import (
    AccessKey,
    AccessKeyStatus,
    Account,
    Connectivity,
    Instance,
    InstanceErrorReason,
    InstanceStatus,
    Key,
    KeyFilter,
    KeyState,
    KeyVersion,
    Page,
    PageRequest,
)
from hyok.kms.store._rows import check_expected, locked_row, select_page, writing
from hyok.kms.store.aliases import AliasRepository
from hyok.kms.store.associations import AssociationRepository
from hyok.kms.store.db import Database
from hyok.kms.store.errors import RowNotFoundError
from hyok.kms.store.ram_repositories import (
    ConsolePasswordRepository,
    LoginProfileRepository,
    RamPolicyRepository,
    RamRoleRepository,
    RamUserRepository,
    StsCredentialRepository,
)
from hyok.kms.store.secretbox import SecretBox
from hyok.kms.store.sharing import InstanceSharingRepository
from hyok.kms.store.tables import (
    access_keys,
    accounts,
    aliases,
    instances,
    key_tags,
    key_versions,
    keys,
)

__all__ = [
    "AccessKeyRepository",
    "AccountRepository",
    "InstanceRepository",
    "KeyRepository",
    "KmsStore",
    "StoreSession",
]

_T = TypeVar("_T")
_DEFAULT_PAGE = PageRequest()

_ACCESS_KEY_CIPHERTEXT_COLUMN = "secret_ciphertext"
_MAX_TAG_LENGTH: Final = 128
MAX_TAGS_PER_KEY: Final = 20
"""The most tags one key may carry."""
_PROXY_CIPHERTEXT_COLUMN = "proxy_secret_ciphertext"
# A health check of a proxy must pass again after a change of these states' settings.
_RECHECKED_STATES: Final = frozenset(
    {InstanceStatus.CONNECTED, InstanceStatus.CONNECTING, InstanceStatus.ERROR}
)


# --- Accounts ---------------------------------------------------------------------


def _account(row: RowMapping) -> Account:
    return Account(account_id=row["account_id"], created_at=row["created_at"])


class AccountRepository:
    """Accounts (tenants)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, account: Account) -> None:
        """Insert an account. Raises DuplicateRowError when the account ID exists."""
        with writing(self._connection, f"creating account {account.account_id!r}"):
            self._connection.execute(
                insert(accounts).values(
                    account_id=account.account_id, created_at=account.created_at
                )
            )

    def get(self, account_id: str) -> Account | None:
        """Return the account, or None."""
        query = select(accounts).where(accounts.c.account_id == account_id)
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _account(row)

    def list(self, page: PageRequest = _DEFAULT_PAGE) -> Page[Account]:
        """Return one page of all accounts, by creation time."""
        query = select(accounts).order_by(accounts.c.created_at, accounts.c.account_id)
        return select_page(self._connection, query, [], accounts, page, _account)


# --- AccessKeys -------------------------------------------------------------------


class AccessKeyRepository:
    """AccessKey pairs. The secret is stored encrypted with the SecretBox."""

    def __init__(self, connection: Connection, secretbox: SecretBox) -> None:
        self._connection = connection
        self._secretbox = secretbox

    def _from_row(self, row: RowMapping) -> AccessKey:
        secret = self._secretbox.decrypt_secret(
            row[_ACCESS_KEY_CIPHERTEXT_COLUMN],
            table=access_keys.name,
            column=_ACCESS_KEY_CIPHERTEXT_COLUMN,
            row_id=row["access_key_id"],
        )
        return AccessKey(
            access_key_id=row["access_key_id"],
            account_id=row["account_id"],
            secret=secret,
            status=row["status"],
            created_at=row["created_at"],
            user_name=row["user_name"],
        )

    def create(self, access_key: AccessKey) -> None:
        """Insert an AccessKey with its secret encrypted.

        Raises DuplicateRowError for a used AccessKey ID, and
        MissingReferenceError for an unknown account or RAM user.
        """
        ciphertext = self._secretbox.encrypt_secret(
            access_key.secret,
            table=access_keys.name,
            column=_ACCESS_KEY_CIPHERTEXT_COLUMN,
            row_id=access_key.access_key_id,
        )
        references = {"account": access_key.account_id}
        if access_key.user_name is not None:
            references["RAM user"] = access_key.user_name
        with writing(
            self._connection, f"creating AccessKey {access_key.access_key_id!r}", references
        ):
            self._connection.execute(
                insert(access_keys).values(
                    access_key_id=access_key.access_key_id,
                    account_id=access_key.account_id,
                    status=str(access_key.status),
                    secret_ciphertext=ciphertext,
                    created_at=access_key.created_at,
                    user_name=access_key.user_name,
                )
            )

    def get(self, access_key_id: str) -> AccessKey | None:
        """Return the AccessKey with its decrypted secret, or None."""
        query = select(access_keys).where(access_keys.c.access_key_id == access_key_id)
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else self._from_row(row)

    def list_for_user(self, account_id: str, user_name: str) -> list[AccessKey]:
        """Return the AccessKeys of a RAM user, by creation time."""
        query = (
            select(access_keys)
            .where(access_keys.c.account_id == account_id, access_keys.c.user_name == user_name)
            .order_by(access_keys.c.created_at, access_keys.c.access_key_id)
        )
        return [self._from_row(row) for row in self._connection.execute(query).mappings()]

    def delete(self, access_key_id: str) -> None:
        """Delete an AccessKey."""
        with writing(self._connection, f"deleting AccessKey {access_key_id!r}"):
            result = self._connection.execute(
                delete(access_keys).where(access_keys.c.access_key_id == access_key_id)
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"AccessKey {access_key_id!r} does not exist")

    def list(self, account_id: str, page: PageRequest = _DEFAULT_PAGE) -> Page[AccessKey]:
        """Return one page of an account's AccessKeys (root and RAM users), by creation time."""
        query = select(access_keys).order_by(access_keys.c.created_at, access_keys.c.access_key_id)
        conditions = [access_keys.c.account_id == account_id]
        return select_page(self._connection, query, conditions, access_keys, page, self._from_row)

    def update_status(
        self,
        access_key_id: str,
        status: AccessKeyStatus,
        *,
        expected: Collection[AccessKeyStatus] | None = None,
    ) -> AccessKey:
        """Set an AccessKey's status and return the changed AccessKey."""
        row = locked_row(self._connection, access_keys, "access_key_id", access_key_id)
        if row is None:
            raise RowNotFoundError(f"AccessKey {access_key_id!r} does not exist")
        current = self._from_row(row)
        check_expected("AccessKey", access_key_id, current.status, expected)
        changed = dataclasses.replace(current, status=status)
        with writing(self._connection, f"updating AccessKey {access_key_id!r}"):
            self._connection.execute(
                update(access_keys)
                .where(access_keys.c.access_key_id == access_key_id)
                .values(status=str(changed.status))
            )
        return changed


# --- Instances --------------------------------------------------------------------


class InstanceRepository:
    """External key management instances and their XKI proxy settings."""

    def __init__(self, connection: Connection, secretbox: SecretBox) -> None:
        self._connection = connection
        self._secretbox = secretbox

    def _from_row(self, row: RowMapping) -> Instance:
        ciphertext = row[_PROXY_CIPHERTEXT_COLUMN]
        secret = (
            None
            if ciphertext is None
            else self._secretbox.decrypt_secret(
                ciphertext,
                table=instances.name,
                column=_PROXY_CIPHERTEXT_COLUMN,
                row_id=row["instance_id"],
            )
        )
        return Instance(
            instance_id=row["instance_id"],
            account_id=row["account_id"],
            region=row["region"],
            name=row["name"],
            connectivity=row["connectivity"],
            proxy_endpoint=row["proxy_endpoint"],
            proxy_uri_path=row["proxy_uri_path"],
            vpc_endpoint_service=row["vpc_endpoint_service"],
            proxy_access_key_id=row["proxy_access_key_id"],
            proxy_secret=secret,
            tls_fingerprint=row["tls_fingerprint"],
            status=row["status"],
            error_reason=row["error_reason"],
            error_detail=row["error_detail"],
            last_health_check_at=row["last_health_check_at"],
            created_at=row["created_at"],
        )

    def _encrypt(self, instance_id: str, secret: Secret | None) -> bytes | None:
        if secret is None:
            return None
        return self._secretbox.encrypt_secret(
            secret, table=instances.name, column=_PROXY_CIPHERTEXT_COLUMN, row_id=instance_id
        )

    def create(self, instance: Instance) -> None:
        """Insert an instance, with or without a proxy configuration, its secret encrypted.

        Raises DuplicateRowError for a used instance ID, and
        MissingReferenceError for an unknown account.
        """
        ciphertext = self._encrypt(instance.instance_id, instance.proxy_secret)
        with writing(
            self._connection,
            f"creating instance {instance.instance_id!r}",
            {"account": instance.account_id},
        ):
            self._connection.execute(
                insert(instances).values(
                    instance_id=instance.instance_id,
                    account_id=instance.account_id,
                    region=instance.region,
                    name=instance.name,
                    connectivity=str(instance.connectivity),
                    proxy_endpoint=instance.proxy_endpoint,
                    proxy_uri_path=instance.proxy_uri_path,
                    vpc_endpoint_service=instance.vpc_endpoint_service,
                    proxy_access_key_id=instance.proxy_access_key_id,
                    proxy_secret_ciphertext=ciphertext,
                    tls_fingerprint=instance.tls_fingerprint,
                    status=str(instance.status),
                    error_reason=_optional_str(instance.error_reason),
                    error_detail=instance.error_detail,
                    last_health_check_at=instance.last_health_check_at,
                    created_at=instance.created_at,
                )
            )

    def get(self, instance_id: str) -> Instance | None:
        """Return the instance with its decrypted proxy secret, or None."""
        query = select(instances).where(instances.c.instance_id == instance_id)
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else self._from_row(row)

    def list(
        self, account_id: str, page: PageRequest = _DEFAULT_PAGE, *, region: str | None = None
    ) -> Page[Instance]:
        """Return one page of an account's instances, in one region or all, by creation time."""
        query = select(instances).order_by(instances.c.created_at, instances.c.instance_id)
        conditions = [instances.c.account_id == account_id]
        if region is not None:
            conditions.append(instances.c.region == region)
        return select_page(self._connection, query, conditions, instances, page, self._from_row)

    def list_by_status(self, statuses: Collection[InstanceStatus]) -> tuple[Instance, ...]:
        """Return every instance of every account and region in one of ``statuses``.

        The health monitor uses it to find the instances it must check.
        """
        query = (
            select(instances)
            .where(instances.c.status.in_(sorted(str(status) for status in statuses)))
            .order_by(instances.c.created_at, instances.c.instance_id)
        )
        rows = self._connection.execute(query).mappings()
        return tuple(self._from_row(row) for row in rows)

    def count_keys(self, instance_id: str) -> int:
        """Return the number of keys in an instance, in every state."""
        query = select(func.count()).select_from(keys).where(keys.c.instance_id == instance_id)
        return self._connection.scalar(query) or 0

    def update_proxy_configuration(
        self,
        instance_id: str,
        *,
        connectivity: Connectivity,
        endpoint: str,
        uri_path: str,
        vpc_endpoint_service: str | None,
        access_key_id: str,
        secret: Secret,
        tls_fingerprint: str | None,
    ) -> Instance:
        """Replace an instance's XKI proxy settings and return the changed instance.

        When the settings change on a Connected, Connecting or Error
        instance, it becomes Connecting without an error reason, because the
        new settings have not passed a health check. Uninitialized and
        Disconnected instances keep their status. Settings equal to the
        stored ones change nothing. The record's checks raise
        ValidationError for invalid settings.
        """
        row = locked_row(self._connection, instances, "instance_id", instance_id)
        if row is None:
            raise RowNotFoundError(f"instance {instance_id!r} does not exist")
        current = self._from_row(row)
        changed = dataclasses.replace(
            current,
            connectivity=connectivity,
            proxy_endpoint=endpoint,
            proxy_uri_path=uri_path,
            vpc_endpoint_service=vpc_endpoint_service,
            proxy_access_key_id=access_key_id,
            proxy_secret=secret,
            tls_fingerprint=tls_fingerprint,
        )
        if changed.same_proxy_configuration(current):
            return current
        if current.status in _RECHECKED_STATES:
            changed = dataclasses.replace(
                changed, status=InstanceStatus.CONNECTING, error_reason=None, error_detail=""
            )
        with writing(self._connection, f"updating the XKI proxy of instance {instance_id!r}"):
            self._connection.execute(
                update(instances)
                .where(instances.c.instance_id == instance_id)
                .values(
                    connectivity=str(changed.connectivity),
                    proxy_endpoint=changed.proxy_endpoint,
                    proxy_uri_path=changed.proxy_uri_path,
                    vpc_endpoint_service=changed.vpc_endpoint_service,
                    proxy_access_key_id=changed.proxy_access_key_id,
                    proxy_secret_ciphertext=self._encrypt(instance_id, changed.proxy_secret),
                    tls_fingerprint=changed.tls_fingerprint,
                    status=str(changed.status),
                    error_reason=_optional_str(changed.error_reason),
                    error_detail=changed.error_detail,
                )
            )
        return changed

    def update_status(
        self,
        instance_id: str,
        status: InstanceStatus,
        *,
        error_reason: InstanceErrorReason | None = None,
        error_detail: str = "",
        checked_at: datetime | None = None,
        expected: Collection[InstanceStatus] | None = None,
    ) -> Instance:
        """Set an instance's connection state and return the changed instance.

        ``error_reason`` and ``error_detail`` replace the stored ones.
        ``checked_at``, when given, becomes the last health check time.
        """
        row = locked_row(self._connection, instances, "instance_id", instance_id)
        if row is None:
            raise RowNotFoundError(f"instance {instance_id!r} does not exist")
        current = self._from_row(row)
        check_expected("instance", instance_id, current.status, expected)
        changed = dataclasses.replace(
            current,
            status=status,
            error_reason=error_reason,
            error_detail=error_detail,
            last_health_check_at=checked_at or current.last_health_check_at,
        )
        with writing(self._connection, f"updating instance {instance_id!r}"):
            self._connection.execute(
                update(instances)
                .where(instances.c.instance_id == instance_id)
                .values(
                    status=str(changed.status),
                    error_reason=_optional_str(changed.error_reason),
                    error_detail=changed.error_detail,
                    last_health_check_at=changed.last_health_check_at,
                )
            )
        return changed

    def update_status_if_unchanged(
        self,
        checked: Instance,
        status: InstanceStatus,
        *,
        error_reason: InstanceErrorReason | None = None,
        error_detail: str = "",
        checked_at: datetime | None = None,
    ) -> Instance | None:
        """Set the connection state of an instance read earlier as ``checked``, if still current.

        The change is made, as :meth:`update_status` makes it, only when the
        instance still has the status and proxy settings of ``checked``.
        Otherwise nothing changes and None is returned: the result of a
        health check of settings that have changed since, or one that would
        undo a concurrent DisconnectKmsInstance, is stale.
        """
        row = locked_row(self._connection, instances, "instance_id", checked.instance_id)
        if row is None:
            return None
        current = self._from_row(row)
        if current.status is not checked.status or not current.same_proxy_configuration(checked):
            return None
        return self.update_status(
            checked.instance_id,
            status,
            error_reason=error_reason,
            error_detail=error_detail,
            checked_at=checked_at,
        )


def _optional_str(value: object | None) -> str | None:
    return None if value is None else str(value)


# --- Keys and key versions --------------------------------------------------------


def _key(row: RowMapping) -> Key:
    return Key(
        key_id=row["key_id"],
        account_id=row["account_id"],
        region=row["region"],
        instance_id=row["instance_id"],
        external_key_id=row["external_key_id"],
        description=row["description"],
        state=row["state"],
        key_spec=row["key_spec"],
        key_usage=row["key_usage"],
        origin=row["origin"],
        protection_level=row["protection_level"],
        creator=row["creator"],
        created_at=row["created_at"],
        primary_key_version_id=row["primary_key_version_id"],
        deletion_protection=bool(row["deletion_protection"]),
        deletion_protection_description=row["deletion_protection_description"],
        delete_date=row["delete_date"],
        policy=row["policy"],
    )


def _check_tag_lengths(tags: Sequence[tuple[str, str]]) -> None:
    # PostgreSQL rejects a value longer than its VARCHAR column with a DataError,
    # not a constraint error, so the lengths are checked before the insert.
    for tag_key, tag_value in tags:
        if not 1 <= len(tag_key) <= _MAX_TAG_LENGTH:
            raise ValidationError(
                f"the tag key {tag_key[:64]!r} has {len(tag_key)} characters: use 1 to "
                f"{_MAX_TAG_LENGTH}"
            )
        if len(tag_value) > _MAX_TAG_LENGTH:
            raise ValidationError(
                f"the value of tag {tag_key!r} has {len(tag_value)} characters: the maximum is "
                f"{_MAX_TAG_LENGTH}"
            )


def _alias_and_tag_conditions(filters: KeyFilter) -> list[ColumnElement[bool]]:
    """Build the ListKeys conditions on a key's aliases and tags, as EXISTS subqueries."""
    conditions: list[ColumnElement[bool]] = []
    if filters.alias_names:
        conditions.append(
            exists().where(
                aliases.c.key_id == keys.c.key_id,
                aliases.c.alias_name.in_(sorted(filters.alias_names)),
            )
        )
    tag_conditions = [key_tags.c.key_id == keys.c.key_id]
    if filters.tag_keys:
        tag_conditions.append(key_tags.c.tag_key.in_(sorted(filters.tag_keys)))
    if filters.tag_values:
        tag_conditions.append(key_tags.c.tag_value.in_(sorted(filters.tag_values)))
    if len(tag_conditions) > 1:
        conditions.append(exists().where(*tag_conditions))
    return conditions


def _key_version(row: RowMapping) -> KeyVersion:
    return KeyVersion(
        key_id=row["key_id"], key_version_id=row["key_version_id"], created_at=row["created_at"]
    )


class KeyRepository:
    """KMS keys (metadata only) and their key versions."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, key: Key, version: KeyVersion, tags: Sequence[tuple[str, str]] = ()) -> None:
        """Insert a key with its primary version and its tags, all or nothing.

        ``version`` must belong to ``key`` and be its primary key version,
        else ValueError. ``tags`` are (tag key, tag value) pairs. The API
        layer checks their characters, and this method their lengths: a tag
        key of 1 to 128 characters and a value of at most 128, else
        ValidationError. Raises DuplicateRowError for a used key ID or key
        version ID or a repeated tag key, and MissingReferenceError for an
        unknown account or instance.
        """
        _check_tag_lengths(tags)
        if version.key_id != key.key_id or version.key_version_id != key.primary_key_version_id:
            raise ValueError(
                f"key version {version.key_version_id!r} of key {version.key_id!r} is not the "
                f"primary key version {key.primary_key_version_id!r} of key {key.key_id!r}"
            )
        references = {"account": key.account_id, "instance": key.instance_id}
        with writing(self._connection, f"creating key {key.key_id!r}", references):
            self._connection.execute(
                insert(keys).values(
                    key_id=key.key_id,
                    account_id=key.account_id,
                    region=key.region,
                    instance_id=key.instance_id,
                    external_key_id=key.external_key_id,
                    description=key.description,
                    state=str(key.state),
                    key_spec=str(key.key_spec),
                    key_usage=str(key.key_usage),
                    origin=str(key.origin),
                    protection_level=str(key.protection_level),
                    creator=key.creator,
                    created_at=key.created_at,
                    primary_key_version_id=key.primary_key_version_id,
                    deletion_protection=key.deletion_protection,
                    deletion_protection_description=key.deletion_protection_description,
                    delete_date=key.delete_date,
                    policy=key.policy,
                )
            )
            self._connection.execute(
                insert(key_versions).values(
                    key_version_id=version.key_version_id,
                    key_id=version.key_id,
                    created_at=version.created_at,
                )
            )
            if tags:
                self._connection.execute(
                    insert(key_tags),
                    [
                        {"key_id": key.key_id, "tag_key": tag_key, "tag_value": tag_value}
                        for tag_key, tag_value in tags
                    ],
                )

    def get(self, key_id: str) -> Key | None:
        """Return the key, or None."""
        query = select(keys).where(keys.c.key_id == key_id)
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _key(row)

    def list_tags(self, key_id: str) -> list[tuple[str, str]]:
        """Return a key's tags as (tag key, tag value) pairs, by tag key."""
        query = (
            select(key_tags.c.tag_key, key_tags.c.tag_value)
            .where(key_tags.c.key_id == key_id)
            .order_by(key_tags.c.tag_key)
        )
        return [(row.tag_key, row.tag_value) for row in self._connection.execute(query)]

    def set_tags(self, key_id: str, tags: Sequence[tuple[str, str]]) -> None:
        """Add tags to a key, replacing the value of each tag key it has already.

        The key row is locked first, so concurrent changes cannot together
        pass :data:`MAX_TAGS_PER_KEY`. Raises RowNotFoundError for a missing
        key and ValidationError when the key would have too many tags.
        """
        _check_tag_lengths(tags)
        if locked_row(self._connection, keys, "key_id", key_id) is None:
            raise RowNotFoundError(f"key {key_id!r} does not exist")
        merged = dict(self.list_tags(key_id))
        merged.update(tags)
        if len(merged) > MAX_TAGS_PER_KEY:
            raise ValidationError(
                f"key {key_id} would have {len(merged)} tags, above the maximum of "
                f"{MAX_TAGS_PER_KEY}"
            )
        names = [tag_key for tag_key, _ in tags]
        with writing(self._connection, f"tagging key {key_id!r}"):
            self._connection.execute(
                delete(key_tags).where(key_tags.c.key_id == key_id, key_tags.c.tag_key.in_(names))
            )
            if tags:
                self._connection.execute(
                    insert(key_tags),
                    [
                        {"key_id": key_id, "tag_key": tag_key, "tag_value": tag_value}
                        for tag_key, tag_value in tags
                    ],
                )

    def remove_tags(self, key_id: str, tag_keys: Collection[str] | None) -> int:
        """Remove the named tags of a key (every tag for None); return how many were removed.

        A tag key that the key does not have is ignored.
        """
        if locked_row(self._connection, keys, "key_id", key_id) is None:
            raise RowNotFoundError(f"key {key_id!r} does not exist")
        statement = delete(key_tags).where(key_tags.c.key_id == key_id)
        if tag_keys is not None:
            statement = statement.where(key_tags.c.tag_key.in_(sorted(tag_keys)))
        with writing(self._connection, f"untagging key {key_id!r}"):
            result = self._connection.execute(statement)
        return int(result.rowcount)

    def list(
        self,
        account_id: str,
        region: str,
        page: PageRequest = _DEFAULT_PAGE,
        filters: KeyFilter | None = None,
    ) -> Page[Key]:
        """Return one page of an account's keys in a region, by creation time.

        ``filters`` keeps only the keys that match it (see :class:`KeyFilter`).
        """
        conditions = [keys.c.account_id == account_id, keys.c.region == region]
        if filters is not None:
            wanted: list[tuple[str, Collection[object]]] = [
                ("state", filters.states),
                ("key_spec", filters.specs),
                ("key_usage", filters.usages),
                ("protection_level", filters.protection_levels),
                ("instance_id", filters.instance_ids),
            ]
            for column, values in wanted:
                if values:
                    conditions.append(keys.c[column].in_(sorted(str(value) for value in values)))
            conditions.extend(_alias_and_tag_conditions(filters))
        query = select(keys).order_by(keys.c.created_at, keys.c.key_id)
        return select_page(self._connection, query, conditions, keys, page, _key)

    def _change(self, key_id: str, expected: Collection[KeyState] | None, **changes: Any) -> Key:
        row = locked_row(self._connection, keys, "key_id", key_id)
        if row is None:
            raise RowNotFoundError(f"key {key_id!r} does not exist")
        current = _key(row)
        check_expected("key", key_id, current.state, expected)
        changed = dataclasses.replace(current, **changes)
        values = {
            name: str(value) if isinstance(value, KeyState) else value
            for name, value in changes.items()
        }
        with writing(self._connection, f"updating key {key_id!r}"):
            self._connection.execute(update(keys).where(keys.c.key_id == key_id).values(**values))
        return changed

    def update_state(
        self,
        key_id: str,
        state: KeyState,
        *,
        delete_date: datetime | None = None,
        expected: Collection[KeyState] | None = None,
    ) -> Key:
        """Set a key's state and delete date, and return the changed key.

        ``delete_date`` is required for PendingDeletion and must be None for
        other states. A key with deletion protection cannot become
        PendingDeletion (ValidationError).
        """
        return self._change(key_id, expected, state=state, delete_date=delete_date)

    def update_description(self, key_id: str, description: str) -> Key:
        """Replace a key's description and return the changed key."""
        return self._change(key_id, None, description=description)

    def update_policy(self, key_id: str, policy: str) -> Key:
        """Replace a key's policy (JSON text) and return the changed key."""
        return self._change(key_id, None, policy=policy)

    def set_deletion_protection(self, key_id: str, enabled: bool, description: str = "") -> Key:
        """Turn deletion protection on (with a description) or off, and return the changed key.

        Turning it off clears the description. A PendingDeletion key cannot
        be protected (ValidationError).
        """
        return self._change(
            key_id,
            None,
            deletion_protection=enabled,
            deletion_protection_description=description if enabled else "",
        )

    def due_for_deletion(self, now: datetime, limit: int) -> tuple[str, ...]:
        """Return up to ``limit`` IDs of PendingDeletion keys whose delete date has passed."""
        query = (
            select(keys.c.key_id)
            .where(
                keys.c.state == str(KeyState.PENDING_DELETION),
                keys.c.delete_date <= now,
            )
            .order_by(keys.c.delete_date, keys.c.key_id)
            .limit(limit)
        )
        return tuple(self._connection.scalars(query))

    def delete_if_due(self, key_id: str, now: datetime) -> bool:
        """Delete a key with its versions, tags and aliases if it is still PendingDeletion and due.

        Returns False, deleting nothing, when the deletion was cancelled or
        the key is gone meanwhile.
        """
        statement = delete(keys).where(
            keys.c.key_id == key_id,
            keys.c.state == str(KeyState.PENDING_DELETION),
            keys.c.delete_date <= now,
        )
        with writing(self._connection, f"deleting key {key_id!r}"):
            result = self._connection.execute(statement)
        return bool(result.rowcount)

    def delete(self, key_id: str) -> None:
        """Delete a key with its versions, tags and aliases."""
        with writing(self._connection, f"deleting key {key_id!r}"):
            result = self._connection.execute(delete(keys).where(keys.c.key_id == key_id))
        if result.rowcount == 0:
            raise RowNotFoundError(f"key {key_id!r} does not exist")

    def get_version(self, key_id: str, key_version_id: str) -> KeyVersion | None:
        """Return a version of a key, or None when the key has no such version."""
        query = select(key_versions).where(
            key_versions.c.key_id == key_id, key_versions.c.key_version_id == key_version_id
        )
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _key_version(row)

    def list_versions(self, key_id: str, page: PageRequest = _DEFAULT_PAGE) -> Page[KeyVersion]:
        """Return one page of a key's versions, by creation time."""
        query = select(key_versions).order_by(
            key_versions.c.created_at, key_versions.c.key_version_id
        )
        conditions = [key_versions.c.key_id == key_id]
        return select_page(self._connection, query, conditions, key_versions, page, _key_version)


# --- Sessions ---------------------------------------------------------------------


class StoreSession:
    """One transaction, with a repository for each record type."""

    def __init__(self, connection: Connection, secretbox: SecretBox) -> None:
        self.connection = connection
        self.accounts = AccountRepository(connection)
        self.access_keys = AccessKeyRepository(connection, secretbox)
        self.instances = InstanceRepository(connection, secretbox)
        self.keys = KeyRepository(connection)
        self.aliases = AliasRepository(connection)
        self.associations = AssociationRepository(connection)
        self.sharing = InstanceSharingRepository(connection)
        self.ram_users = RamUserRepository(connection)
        self.ram_roles = RamRoleRepository(connection)
        self.ram_policies = RamPolicyRepository(connection)
        self.sts_credentials = StsCredentialRepository(connection, secretbox)
        self.login_profiles = LoginProfileRepository(connection)
        self.console_passwords = ConsolePasswordRepository(connection)


class KmsStore:
    """The KMS records in one database, with secrets encrypted under one root key."""

    def __init__(self, database: Database, secretbox: SecretBox) -> None:
        self.database = database
        self.secretbox = secretbox

    def __repr__(self) -> str:
        return f"KmsStore({self.database!r}, {self.secretbox!r})"

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[StoreSession]:
        """Open a session: one transaction that commits on exit and rolls back on an error.

        ``read_only`` sessions do not wait for SQLite writers and read one
        snapshot on PostgreSQL. See :meth:`Database.session` for the errors.
        """
        with self.database.session(read_only=read_only) as connection:
            yield StoreSession(connection, self.secretbox)

    @contextmanager
    def try_job_lock(self, name: str) -> Iterator[bool]:
        """Try to take the lock of background job ``name`` without waiting, for one run of it.

        Yields True when this process holds the lock until the block ends,
        and False when another session holds it, so the caller skips this
        run. On PostgreSQL the lock is a transaction-level advisory lock on
        a connection held for the block, so a crashed node releases it with
        its connection. On SQLite, which serves one machine, it always
        yields True and takes no lock.
        """
        if self.database.dialect != "postgresql":
            yield True
            return
        with self.database.session() as connection:
            acquired = connection.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _job_lock_key(name)}
            )
            yield bool(acquired)


def _job_lock_key(name: str) -> int:
    """Return the 64-bit advisory lock key of a job name: the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(b"hyok-job:" + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
