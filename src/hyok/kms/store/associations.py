"""Key associations in the store: who used each key, and resources registered with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from hyok.kms.store._rows import writing
from hyok.kms.store.tables import key_resources, key_usage, keys

__all__ = ["AssociationRepository", "KeyResource", "KeyUse", "UsageCount"]


@dataclass(frozen=True, slots=True)
class UsageCount:
    """Uses of one key by one principal through one service, gathered since the last flush."""

    key_id: str
    principal: str
    via_service: str
    first_used_at: datetime
    last_used_at: datetime
    count: int


@dataclass(frozen=True, slots=True)
class KeyUse:
    """A principal (and via-service) that used a key, with the first and last use and a count."""

    principal: str
    via_service: str
    first_used_at: datetime
    last_used_at: datetime
    use_count: int


@dataclass(frozen=True, slots=True)
class KeyResource:
    """A resource that an integrating service registered as using a key."""

    service: str
    resource_id: str
    registered_by: str
    registered_at: datetime


class AssociationRepository:
    """The ``key_usage`` and ``key_resources`` tables."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_usage(self, counts: Sequence[UsageCount]) -> int:
        """Merge usage counts into the table; return how many rows were written.

        A count of a key that no longer exists is dropped, since a deleted
        key has no associations.
        """
        if not counts:
            return 0
        existing = set(
            self._connection.scalars(
                select(keys.c.key_id).where(keys.c.key_id.in_({c.key_id for c in counts}))
            )
        )
        rows = [
            {
                "key_id": c.key_id,
                "principal": c.principal,
                "via_service": c.via_service,
                "first_used_at": c.first_used_at,
                "last_used_at": c.last_used_at,
                "use_count": c.count,
            }
            for c in counts
            if c.key_id in existing
        ]
        if not rows:
            return 0
        statement: Any
        if self._connection.dialect.name == "postgresql":
            statement = postgresql.insert(key_usage)
            earliest, latest = "least", "greatest"
        else:
            statement = sqlite.insert(key_usage)
            # SQLite's two-argument min() and max() are scalar functions; the
            # stored times are ISO text of one format, so they compare in order.
            earliest, latest = "min", "max"
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["key_id", "principal", "via_service"],
            set_={
                "first_used_at": getattr(func, earliest)(
                    key_usage.c.first_used_at, excluded.first_used_at
                ),
                "last_used_at": getattr(func, latest)(
                    key_usage.c.last_used_at, excluded.last_used_at
                ),
                "use_count": key_usage.c.use_count + excluded.use_count,
            },
        )
        with writing(self._connection, "recording key usage"):
            self._connection.execute(statement, rows)
        return len(rows)

    def usage(self, key_id: str, since: datetime | None = None) -> list[KeyUse]:
        """Return who used a key (since ``since``, if given), most recent first."""
        query = select(key_usage).where(key_usage.c.key_id == key_id)
        if since is not None:
            query = query.where(key_usage.c.last_used_at >= since)
        query = query.order_by(key_usage.c.last_used_at.desc(), key_usage.c.principal)
        return [
            KeyUse(
                principal=row["principal"],
                via_service=row["via_service"],
                first_used_at=row["first_used_at"],
                last_used_at=row["last_used_at"],
                use_count=row["use_count"],
            )
            for row in self._connection.execute(query).mappings()
        ]

    def add_resource(self, key_id: str, resource: KeyResource) -> bool:
        """Register a resource with a key; return False when it was registered already."""
        found = self._connection.scalar(
            select(func.count())
            .select_from(key_resources)
            .where(
                key_resources.c.key_id == key_id,
                key_resources.c.service == resource.service,
                key_resources.c.resource_id == resource.resource_id,
            )
        )
        if found:
            return False
        with writing(self._connection, f"registering a resource with key {key_id!r}"):
            self._connection.execute(
                key_resources.insert().values(
                    key_id=key_id,
                    service=resource.service,
                    resource_id=resource.resource_id,
                    registered_by=resource.registered_by,
                    registered_at=resource.registered_at,
                )
            )
        return True

    def remove_resource(self, key_id: str, service: str, resource_id: str) -> bool:
        """Remove a registered resource; return False when it was not registered."""
        with writing(self._connection, f"removing a resource of key {key_id!r}"):
            result = self._connection.execute(
                delete(key_resources).where(
                    key_resources.c.key_id == key_id,
                    key_resources.c.service == service,
                    key_resources.c.resource_id == resource_id,
                )
            )
        return bool(result.rowcount)

    def resources(self, key_id: str) -> list[KeyResource]:
        """Return the resources registered with a key, by service and resource ID."""
        query = (
            select(key_resources)
            .where(key_resources.c.key_id == key_id)
            .order_by(key_resources.c.service, key_resources.c.resource_id)
        )
        return [
            KeyResource(
                service=row["service"],
                resource_id=row["resource_id"],
                registered_by=row["registered_by"],
                registered_at=row["registered_at"],
            )
            for row in self._connection.execute(query).mappings()
        ]
