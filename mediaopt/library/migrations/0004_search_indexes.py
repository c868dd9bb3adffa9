"""Indexes for the library's search (mediaopt.library.search): pg_trgm GIN indexes on
PostgreSQL, an FTS5 trigram table kept by triggers on SQLite. Each database gets only its
own; the SQL is frozen here, as a migration's must be."""

from django.db import migrations

COLUMNS = ("original_name", "alt_text", "title", "caption", "keywords")
TABLE = "mediaopt_mediaasset"
FTS = "mediaopt_mediaasset_search"


def _sqlite_has_trigram(connection) -> bool:
    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE VIRTUAL TABLE temp.mediaopt_probe USING fts5(t, tokenize='trigram')")
        except Exception:  # noqa: BLE001 - no FTS5 or an SQLite before 3.34: LIKE alone
            return False
        cursor.execute("DROP TABLE temp.mediaopt_probe")
    return True


def _sqlite_forward() -> list[str]:
    columns = ", ".join(COLUMNS)
    new = ", ".join(f"new.{name}" for name in COLUMNS)
    old = ", ".join(f"old.{name}" for name in COLUMNS)
    return [
        f"CREATE VIRTUAL TABLE {FTS} USING fts5({columns}, content='{TABLE}', "
        "content_rowid='id', tokenize='trigram')",
        f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
        f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON {TABLE} BEGIN "
        f"INSERT INTO {FTS}(rowid, {columns}) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON {TABLE} BEGIN "
        f"INSERT INTO {FTS}({FTS}, rowid, {columns}) VALUES ('delete', old.id, {old}); END",
        # Only when a searched column changes: a revision's other writes cost nothing here.
        f"CREATE TRIGGER {FTS}_update AFTER UPDATE OF {columns} ON {TABLE} BEGIN "
        f"INSERT INTO {FTS}({FTS}, rowid, {columns}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO {FTS}(rowid, {columns}) VALUES (new.id, {new}); END",
    ]


def _postgresql_forward() -> list[str]:
    # Django's icontains on PostgreSQL is UPPER(column::text) LIKE UPPER(%s): the same
    # expression, indexed.
    return ["CREATE EXTENSION IF NOT EXISTS pg_trgm"] + [
        f"CREATE INDEX asset_search_{name} ON {TABLE} USING gin (UPPER({name}) gin_trgm_ops)"
        for name in COLUMNS
    ]


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "sqlite" and _sqlite_has_trigram(connection):
        statements = _sqlite_forward()
    elif connection.vendor == "postgresql":
        statements = _postgresql_forward()
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        for what in ("insert", "delete", "update"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {FTS}_{what}")
        schema_editor.execute(f"DROP TABLE IF EXISTS {FTS}")
    elif connection.vendor == "postgresql":
        for name in COLUMNS:
            schema_editor.execute(f"DROP INDEX IF EXISTS asset_search_{name}")


class Migration(migrations.Migration):
    dependencies = [("mediaopt", "0003_list_indexes")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
