"""Row helpers shared by the repositories: savepoints, paging, row locks and state checks."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, Table, func, select
from sqlalchemy.exc import IntegrityError

from hyok.kms.domain.models import Page, PageRequest
from hyok.kms.store.errors import StaleStateError, integrity_error

__all__ = ["check_expected", "locked_row", "select_page", "writing"]

_T = TypeVar("_T")


@contextmanager
def writing(
    connection: Connection, operation: str, references: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Run writes in a savepoint, and translate a constraint failure into a store error."""
    try:
        with connection.begin_nested():
            yield
    except IntegrityError as exc:
        raise integrity_error(exc, operation, references) from exc


def select_page(
    connection: Connection,
    query: Select[Any],
    conditions: list[ColumnElement[bool]],
    table: Table,
    page: PageRequest,
    convert: Callable[[RowMapping], _T],
) -> Page[_T]:
    total = connection.scalar(select(func.count()).select_from(table).where(*conditions))
    rows = connection.execute(query.where(*conditions).limit(page.size).offset(page.offset))
    items = tuple(convert(row) for row in rows.mappings())
    return Page(items=items, number=page.number, size=page.size, total_count=total or 0)


def locked_row(connection: Connection, table: Table, column: str, value: str) -> RowMapping | None:
    query = select(table).where(table.c[column] == value).with_for_update()
    return connection.execute(query).mappings().one_or_none()


def check_expected(
    kind: str, record_id: str, current: str, expected: Collection[str] | None
) -> None:
    if expected is not None and current not in expected:
        listed = ", ".join(sorted(str(value) for value in expected))
        raise StaleStateError(
            f"{kind} {record_id!r} is {str(current)!r}, not one of {listed}, so nothing was "
            "changed: read it again before deciding on a change"
        )
