"""The errors of the KMS store, and the translation of database errors into them.

::

    HyokError
    └── StoreError                        500 InternalFailure: the KMS database failed
        ├── StoreUnavailableError         503: cannot connect, timed out, locked or deadlocked
        ├── RowNotFoundError              the row to change or delete does not exist
        ├── StaleStateError               the row is not in the state the change expects
        ├── IntegrityViolationError       a write broke a database constraint
        │   ├── DuplicateRowError         a primary key or unique constraint
        │   ├── MissingReferenceError     a foreign key: the referenced row is missing,
        │   │                             or a deleted row is still referenced
        │   └── ConstraintViolationError  a CHECK or NOT NULL constraint
        ├── SchemaVersionError            the schema is not at this code's revision
        └── SecretBoxError                a stored secret cannot be decrypted
            ├── RootKeyMismatchError      it was encrypted under another root key
            └── SecretCorruptError        it was altered, or moved to another row or column

A write that raises IntegrityViolationError has written nothing. Messages name
the operation, the IDs involved and the constraint, and never contain a
secret or a statement's parameters: engines are created with
``hide_parameters=True`` so that SQLAlchemy's own messages leave them out
too. The API layer maps these errors to its wire codes; one that reaches a
caller unmapped is a 500 (503 for StoreUnavailableError).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Final

from sqlalchemy.exc import IntegrityError

from hyok.common.errors import HyokError
from hyok.kms.store.tables import CONSTRAINT_RULES, FOREIGN_KEY_TARGETS, SQLITE_UNIQUE_COLUMNS

__all__ = [
    "ConstraintViolationError",
    "DuplicateRowError",
    "IntegrityViolationError",
    "MissingReferenceError",
    "RootKeyMismatchError",
    "RowNotFoundError",
    "SchemaVersionError",
    "SecretBoxError",
    "SecretCorruptError",
    "StaleStateError",
    "StoreError",
    "StoreUnavailableError",
    "integrity_error",
]

# SQLSTATE codes of PostgreSQL's integrity constraint violation class (23).
_PG_UNIQUE: Final = "23505"
_PG_FOREIGN_KEY: Final = "23503"
_PG_CHECK: Final = "23514"
_PG_NOT_NULL: Final = "23502"


class StoreError(HyokError):
    """A failure of the KMS database."""

    code = "InternalFailure"
    http_status = 500


class StoreUnavailableError(StoreError):
    """The database cannot be reached, or a lock or statement timed out. Retrying may succeed."""

    code = "ServiceUnavailableTemporary"
    http_status = 503


class RowNotFoundError(StoreError):
    """The row that an update or delete names does not exist."""


class StaleStateError(StoreError):
    """The row exists, but its state is not one the change expects, so nothing was changed."""


class IntegrityViolationError(StoreError):
    """A write broke a database constraint and was rolled back.

    ``constraint`` is the constraint's name when the database reports it.
    """

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class DuplicateRowError(IntegrityViolationError):
    """A row with the same primary key or unique value already exists."""


class MissingReferenceError(IntegrityViolationError):
    """A foreign key failed: a referenced row is missing, or a deleted row is still referenced."""


class ConstraintViolationError(IntegrityViolationError):
    """A value broke a CHECK or NOT NULL constraint."""


class SchemaVersionError(StoreError):
    """The database schema is not at the revision this version of hyok needs."""


class SecretBoxError(StoreError):
    """A secret stored in the database cannot be decrypted."""


class RootKeyMismatchError(SecretBoxError):
    """A stored secret was encrypted under a root key other than the configured ones."""


class SecretCorruptError(SecretBoxError):
    """A stored secret was altered, moved to another row or column, or is not in a known format."""


def _classify(exc: IntegrityError) -> tuple[str, str | None]:
    """Return the SQLSTATE-like kind of a violation and the constraint named by the database."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        diag = getattr(orig, "diag", None)
        name = getattr(diag, "constraint_name", None)
        column = getattr(diag, "column_name", None)
        table = getattr(diag, "table_name", None)
        if sqlstate == _PG_NOT_NULL and column:
            name = f"{table}.{column}" if table else column
        return sqlstate, name if isinstance(name, str) else None
    if isinstance(orig, sqlite3.Error):
        # The message is "<KIND> constraint failed: <detail>", where the detail
        # is a constraint name for CHECK and table.column names for UNIQUE and
        # NOT NULL. FOREIGN KEY failures have no detail.
        error_name = getattr(orig, "sqlite_errorname", "")
        _, _, detail = str(orig).partition(": ")
        if error_name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            return _PG_UNIQUE, SQLITE_UNIQUE_COLUMNS.get(detail, detail or None)
        if error_name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            return _PG_FOREIGN_KEY, None
        if error_name == "SQLITE_CONSTRAINT_CHECK":
            return _PG_CHECK, detail or None
        if error_name == "SQLITE_CONSTRAINT_NOTNULL":
            return _PG_NOT_NULL, detail or None
    return "", None


def _missing_reference(
    operation: str, constraint: str | None, references: Mapping[str, str]
) -> MissingReferenceError:
    suffix = f" (constraint {constraint})" if constraint else ""
    noun = FOREIGN_KEY_TARGETS.get(constraint or "")
    if noun is not None and noun in references:
        message = f"{noun} {references[noun]!r} does not exist"
    elif references:
        # SQLite does not say which foreign key failed, so every candidate is named.
        listed = " and ".join(f"{noun} {value!r}" for noun, value in sorted(references.items()))
        message = f"a referenced row does not exist; check that {listed} exist"
    else:
        message = "other rows still refer to this row, or a row it refers to does not exist"
    return MissingReferenceError(f"{operation} failed: {message}{suffix}", constraint)


def integrity_error(
    exc: IntegrityError, operation: str, references: Mapping[str, str] | None = None
) -> IntegrityViolationError:
    """Translate an IntegrityError into the store error that names the broken rule.

    ``operation`` describes the write for the message, such as ``"creating key
    'key-abc'"``. ``references`` maps each row that the write refers to, by
    the nouns of :data:`~hyok.kms.store.tables.FOREIGN_KEY_TARGETS` such as
    ``"instance"``, to its ID, so that a foreign key failure can name the
    missing row. Raise the result ``from exc``.
    """
    kind, constraint = _classify(exc)
    suffix = f" (constraint {constraint})" if constraint else ""
    references = references or {}

    if kind == _PG_UNIQUE:
        rule = CONSTRAINT_RULES.get(constraint or "", "a row with the same unique value")
        return DuplicateRowError(f"{operation} failed: {rule} already exists{suffix}", constraint)

    if kind == _PG_FOREIGN_KEY:
        return _missing_reference(operation, constraint, references)

    if kind == _PG_CHECK:
        rule = CONSTRAINT_RULES.get(constraint or "", "a value breaks a CHECK constraint")
        return ConstraintViolationError(f"{operation} failed: {rule}{suffix}", constraint)

    if kind == _PG_NOT_NULL:
        return ConstraintViolationError(
            f"{operation} failed: a required column is NULL{suffix}", constraint
        )

    return IntegrityViolationError(f"{operation} failed: a database constraint failed", None)
