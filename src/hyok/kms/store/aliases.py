"""The repository of key aliases, ``StoreSession.aliases``.

An alias is unique per account and region: the table's primary key enforces
it, so of several concurrent :meth:`AliasRepository.create` calls with one
name exactly one succeeds and the others raise DuplicateRowError. Deleting a
key deletes its aliases (``ON DELETE CASCADE``).

A change that checks the number of aliases of an account must first call
:meth:`AliasRepository.lock_account` in the same session, so that concurrent
creators in one account run one after another. PostgreSQL locks the account
row, and SQLite write transactions hold the database lock from their start.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    delete,
    func,
    insert,
    select,
    update,
)

from hyok.kms.domain.aliases import Alias
from hyok.kms.domain.models import KeyState, Page, PageRequest
from hyok.kms.store._rows import select_page, writing
from hyok.kms.store.errors import RowNotFoundError, StaleStateError
from hyok.kms.store.tables import accounts, aliases, keys

__all__ = ["AliasRepository"]

_DEFAULT_PAGE = PageRequest()


def _alias(row: RowMapping) -> Alias:
    return Alias(
        alias_name=row["alias_name"],
        account_id=row["account_id"],
        region=row["region"],
        key_id=row["key_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class AliasRepository:
    """Aliases of keys, by account, region and name."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _where(self, account_id: str, region: str, alias_name: str) -> list[ColumnElement[bool]]:
        return [
            aliases.c.account_id == account_id,
            aliases.c.region == region,
            aliases.c.alias_name == alias_name,
        ]

    def _locked(self, where: list[ColumnElement[bool]]) -> RowMapping | None:
        query = select(aliases).where(*where).with_for_update()
        return self._connection.execute(query).mappings().one_or_none()

    # --- Locks --------------------------------------------------------------------

    def lock_account(self, account_id: str) -> bool:
        """Lock the account's row until the session ends; return False when it does not exist."""
        query = select(accounts.c.account_id).where(accounts.c.account_id == account_id)
        return self._connection.execute(query.with_for_update()).first() is not None

    def lock_key_state(self, key_id: str) -> KeyState | None:
        """Lock a key's row until the session ends and return its state, or None when missing.

        An alias written in the same session then cannot point to a key that
        another request schedules for deletion meanwhile.
        """
        query = select(keys.c.state).where(keys.c.key_id == key_id).with_for_update()
        state = self._connection.scalar(query)
        return None if state is None else KeyState(state)

    # --- Reads --------------------------------------------------------------------

    def get(self, account_id: str, region: str, alias_name: str) -> Alias | None:
        """Return the alias, or None."""
        query = select(aliases).where(*self._where(account_id, region, alias_name))
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _alias(row)

    def count(self, account_id: str, region: str) -> int:
        """Return the number of aliases of an account in a region."""
        query = (
            select(func.count())
            .select_from(aliases)
            .where(aliases.c.account_id == account_id, aliases.c.region == region)
        )
        return self._connection.scalar(query) or 0

    def list(self, account_id: str, region: str, page: PageRequest = _DEFAULT_PAGE) -> Page[Alias]:
        """Return one page of an account's aliases in a region, by creation time, then name."""
        query = select(aliases).order_by(aliases.c.created_at, aliases.c.alias_name)
        conditions = [aliases.c.account_id == account_id, aliases.c.region == region]
        return select_page(self._connection, query, conditions, aliases, page, _alias)

    def list_for_key(self, key_id: str, page: PageRequest = _DEFAULT_PAGE) -> Page[Alias]:
        """Return one page of the aliases that point to a key, by creation time, then name."""
        query = select(aliases).order_by(aliases.c.created_at, aliases.c.alias_name)
        conditions = [aliases.c.key_id == key_id]
        return select_page(self._connection, query, conditions, aliases, page, _alias)

    # --- Writes -------------------------------------------------------------------

    def create(self, alias: Alias) -> None:
        """Insert an alias.

        Raises DuplicateRowError when the name exists in the account and
        region, and MissingReferenceError for an unknown account or key.
        """
        references = {"account": alias.account_id, "key": alias.key_id}
        with writing(self._connection, f"creating alias {alias.alias_name!r}", references):
            self._connection.execute(
                insert(aliases).values(
                    account_id=alias.account_id,
                    region=alias.region,
                    alias_name=alias.alias_name,
                    key_id=alias.key_id,
                    created_at=alias.created_at,
                    updated_at=alias.updated_at,
                )
            )

    def update_target(
        self,
        account_id: str,
        region: str,
        alias_name: str,
        key_id: str,
        now: datetime,
        *,
        expected_key_id: str | None = None,
    ) -> Alias:
        """Point an alias to another key and return the changed alias.

        Raises RowNotFoundError when the alias does not exist, StaleStateError
        when ``expected_key_id`` is given and the alias points elsewhere, and
        MissingReferenceError when ``key_id`` does not exist.
        """
        where = self._where(account_id, region, alias_name)
        row = self._locked(where)
        if row is None:
            raise RowNotFoundError(f"alias {alias_name!r} does not exist")
        current = _alias(row)
        _check_target(current, expected_key_id)
        changed = dataclasses.replace(current, key_id=key_id, updated_at=now)
        with writing(self._connection, f"updating alias {alias_name!r}", {"key": key_id}):
            self._connection.execute(
                update(aliases).where(*where).values(key_id=key_id, updated_at=changed.updated_at)
            )
        return changed

    def delete(
        self, account_id: str, region: str, alias_name: str, *, expected_key_id: str | None = None
    ) -> None:
        """Delete an alias.

        Raises RowNotFoundError when the alias does not exist, and
        StaleStateError when ``expected_key_id`` is given and the alias
        points elsewhere.
        """
        where = self._where(account_id, region, alias_name)
        row = self._locked(where)
        if row is None:
            raise RowNotFoundError(f"alias {alias_name!r} does not exist")
        _check_target(_alias(row), expected_key_id)
        with writing(self._connection, f"deleting alias {alias_name!r}"):
            self._connection.execute(delete(aliases).where(*where))


def _check_target(alias: Alias, expected_key_id: str | None) -> None:
    if expected_key_id is not None and alias.key_id != expected_key_id:
        raise StaleStateError(
            f"alias {alias.alias_name!r} points to key {alias.key_id!r}, not "
            f"{expected_key_id!r}, so nothing was changed: read it again before deciding on a "
            "change"
        )
