"""What the ORM cannot say in one statement: ``UPDATE ... RETURNING``.

PostgreSQL and SQLite 3.35+ both return the rows an UPDATE changed, as written, so a
conditional write and the read of its result are one statement (and, on a hot row, one
lock instead of a lock and a second visit).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery


def update_returning(
    rows: QuerySet, *, returning: Sequence[str], also: Sequence[str] = (), **fields
) -> list[tuple]:
    """``rows.update(**fields)``, returning the ``returning`` columns of each changed row,
    then the SQL expressions ``also`` (e.g. the database's clock), written by the caller."""
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(fields)
    sql, params = query.get_compiler(rows.db).as_sql()
    if not sql:
        return []
    connection = connections[rows.db]
    columns = ", ".join([*(connection.ops.quote_name(column) for column in returning), *also])
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {columns}", params)
        return list(cursor.fetchall())
