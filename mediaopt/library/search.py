"""The library's search index on SQLite: an FTS5 table with the trigram tokenizer over the
searched columns, kept in step with the images' table by triggers (migration 0004).

The search rule stays the admin's (every term in one of the fields, ignoring case, a
substring): on SQLite the index only narrows the rows to those whose fields hold each
term's trigrams (when they are few: SELECTIVE), and the same ``LIKE`` then decides, so
the results are exactly those of the plain ``LIKE`` (the trigram tokenizer folds case
beyond ASCII, so it finds a superset of what SQLite's ``LIKE`` finds, never fewer).
Terms under three characters have no trigram, here or in pg_trgm: each would be a scan of
the library (to its end when little matches), so the search leaves them out
(models.search_words) and the admin's list says which it left out.

On PostgreSQL the same ``UPPER(column) LIKE`` runs over pg_trgm GIN indexes on
``UPPER(column)`` (migration 0004), so nothing changes in the query there.
"""

from __future__ import annotations

import functools
import sqlite3

from django.db import connections
from django.db.models.expressions import RawSQL

# Named in migration 0004, which creates the table and its triggers.
TABLE = "mediaopt_mediaasset_search"
# The trigram tokenizer indexes three characters at a time: a shorter term has none.
MIN_TERM = 3
# Up to this many matching rows the index narrows the search; above it, the matches are
# common enough that the list's own order meets a page of them sooner. At a million
# images (bench/scale.py) sorting n matches costs about 7 µs each and walking the order
# about 0.8 µs a row, 100 / (n / 1M) rows for a page: even near 3,000.
SELECTIVE = 3_000


@functools.cache
def trigram_available() -> bool:
    """Whether this process's SQLite has FTS5 with the trigram tokenizer (3.34 and later):
    probed once in memory, the same test the migration makes."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def indexed(using: str) -> bool:
    """Whether searches on the database ``using`` go through the FTS5 table."""
    return connections[using].vendor == "sqlite" and trigram_available()


def phrase(term: str) -> str:
    """``term`` as an FTS5 string: a phrase the trigram tokenizer matches as a substring."""
    return '"' + term.replace('"', '""') + '"'


def narrowing(terms: list[str], *, using: str) -> tuple[RawSQL | None, bool]:
    """The ids of the rows whose fields hold every term of three characters or more (each
    in any one field), None when no term is that long; and whether the match is common
    (more than SELECTIVE rows, one capped count on the FTS table): then walking the list's
    order finds a page of matches sooner than sorting every match, and only the count
    reads the ids."""
    long_terms = [term for term in terms if len(term) >= MIN_TERM]
    if not long_terms:
        return None, False
    match = " AND ".join(phrase(term) for term in long_terms)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s LIMIT %s)",
            (match, SELECTIVE + 1),
        )
        (found,) = cursor.fetchone()
    ids = RawSQL(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s", (match,))
    return ids, found > SELECTIVE
