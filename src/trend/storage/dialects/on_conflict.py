"""Upserts as SQLite and PostgreSQL both write them: ``INSERT … ON CONFLICT (keys) DO …``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Executable, Table

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

    Insert: TypeAlias = postgresql.Insert | sqlite.Insert


class OnConflictUpserts:
    """The upsert methods of a dialect whose INSERT takes an ON CONFLICT clause."""

    insert_of: Callable[[Table], Insert]

    def upsert(self, table: Table, keys: Sequence[str], updates: Mapping[str, Any], **values: Any) -> Executable:
        return self.insert_of(table).values(**values).on_conflict_do_update(index_elements=list(keys),
                                                                           set_=dict(updates))

    def insert_new(self, table: Table) -> Executable:
        return self.insert_of(table).on_conflict_do_nothing()
