"""The KMS store: the only code that touches SQL. SQLite (embedded) or PostgreSQL (several nodes).

The modules, one concept each:

- ``db``: :func:`open_database` and :class:`Database`, engines and sessions.
- ``tables``: the SQLAlchemy Core tables and their constraints.
- ``secretbox``: :class:`SecretBox`, AES-256-GCM encryption of stored secrets.
- ``repositories``: :class:`KmsStore` and a repository per record type.
- ``aliases``: :class:`AliasRepository`, the aliases of keys.
- ``ram_repositories``: the repositories of RAM users, roles, policies, STS credentials
  and console passwords.
- ``nonces``: :class:`DatabaseNonceCache`, the shared replay cache of signature nonces.
- ``errors``: the :class:`StoreError` tree.
- ``migrations``: the Alembic environment, the revisions and :func:`upgrade`.

Example::

    database = open_database("sqlite:///var/lib/hyok/kms.db")
    upgrade(database)
    store = KmsStore(database, SecretBox(root_key))
    with store.session() as session:
        session.accounts.create(account)
"""

from hyok.kms.store.aliases import AliasRepository
from hyok.kms.store.db import DEFAULT_BUSY_TIMEOUT, Database, open_database
from hyok.kms.store.errors import (
    ConstraintViolationError,
    DuplicateRowError,
    IntegrityViolationError,
    MissingReferenceError,
    RootKeyMismatchError,
    RowNotFoundError,
    SchemaVersionError,
    SecretBoxError,
    SecretCorruptError,
    StaleStateError,
    StoreError,
    StoreUnavailableError,
)
from hyok.kms.store.migrations import check_current, current_revision, head_revision, upgrade
from hyok.kms.store.nonces import DatabaseNonceCache
from hyok.kms.store.ram_repositories import (
    ConsolePasswordRepository,
    LoginProfileRepository,
    RamPolicyRepository,
    RamRoleRepository,
    RamUserRepository,
    StsCredentialRepository,
)
from hyok.kms.store.repositories import (
    AccessKeyRepository,
    AccountRepository,
    InstanceRepository,
    KeyRepository,
    KmsStore,
    StoreSession,
)
from hyok.kms.store.secretbox import SecretBox

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "AccessKeyRepository",
    "AccountRepository",
    "AliasRepository",
    "ConsolePasswordRepository",
    "ConstraintViolationError",
    "Database",
    "DatabaseNonceCache",
    "DuplicateRowError",
    "InstanceRepository",
    "IntegrityViolationError",
    "KeyRepository",
    "KmsStore",
    "LoginProfileRepository",
    "MissingReferenceError",
    "RamPolicyRepository",
    "RamRoleRepository",
    "RamUserRepository",
    "RootKeyMismatchError",
    "RowNotFoundError",
    "SchemaVersionError",
    "SecretBox",
    "SecretBoxError",
    "SecretCorruptError",
    "StaleStateError",
    "StoreError",
    "StoreSession",
    "StoreUnavailableError",
    "StsCredentialRepository",
    "check_current",
    "current_revision",
    "head_revision",
    "open_database",
    "upgrade",
]
