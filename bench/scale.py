"""The library list at scale: the first page, each filter and a search, through the real
changelist view (Django's test Client, logged in as a superuser), at each size given,
beside the baseline of the same run: a plain ``SELECT COUNT(*)`` of the images and an
unindexed ``LIKE`` over the searched columns (what a full count and the old search read).
Not part of the test suite::

    .venv/bin/python bench/scale.py                       # 1k 10k 100k 1M on SQLite
    .venv/bin/python bench/scale.py 1000 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt_scale_bench \\
        .venv/bin/python bench/scale.py --explain

On PostgreSQL the database named is dropped and created again. SQLite is a temporary
file. Images are rows only (no files), inserted in large batches (``executemany`` on
SQLite, ``COPY`` on PostgreSQL) with the indexes and the search triggers in place, as
imports would leave them: a third without alt text, a tenth guessed by the heuristic, 2 %
decorative; "lighthouse" in 0.7 % of the images, "kiwi" in one keyword list in
10,000. Each figure is the median of five requests, in milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import recreate  # noqa: E402

BATCH = 20_000
REPEAT = 5
NOUNS = ("dog", "cat", "boat", "car", "tree", "bridge", "river", "market", "child", "bicycle")
PLACES = ("in a park", "on a street", "at the beach", "in the snow", "at night", "indoors")
COLUMNS = (
    "file",
    "thumbnail",
    "original_name",
    "sha256",
    "format",
    "width",
    "height",
    "bytes",
    "created_at",
    "updated_at",
    "alt_text",
    "title",
    "caption",
    "description",
    "keywords",
    "alt_text_source",
    "title_source",
    "caption_source",
    "description_source",
    "keywords_source",
    "is_decorative",
)

PAGES = {
    "first page": "",
    "filter: missing alt text": "alt_text_missing=yes",
    "filter: has alt text": "alt_text_missing=no",
    "filter: alt text from heuristic": "alt_text_source__exact=heuristic",
    "filter: decorative": "is_decorative__exact=1",
    "filter: changed since import": "revised=yes",
    "filter: changed by job #1": "job=1",
    "filter: needs review": "needs_review=yes",
    "filter: AI text in another language": "ai_language=other",
    "search: lighthouse (0.7 %)": "q=lighthouse",
    "search: kiwi (1 in 10,000)": "q=kiwi",
    "search: two words": "q=red+dog",
    "search: 2 characters (left out)": "q=zq",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--explain", action="store_true", help="print the first page's plan")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "mediaopt.settings", "LOG_LEVEL": "WARNING"})
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-scale-") as var:
        os.environ["MEDIAOPT_VAR_DIR"] = var
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith("postgres"):
            recreate(url)
        else:
            os.environ["DATABASE_URL"] = f"sqlite:///{var}/scale.sqlite3"
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the test Client

        call_command("migrate", verbosity=0)
        client = _superuser_client()
        built = 0
        for size in sorted(args.sizes):
            started = time.perf_counter()
            built = _build_to(size, built)
            _analyze()
            spent = time.perf_counter() - started
            print(f"\n{size:,} images ({_vendor()}; built and analysed in {spent:.1f} s)")
            _baseline()
            for label, query in PAGES.items():
                total, sql = _timed(lambda q=query: _get(client, q))
                print(f"  {label:<40} {total:8.1f} ms  (SQL {sql:6.1f} ms)")
            if args.explain:
                _explain()


def _vendor() -> str:
    from django.db import connection

    return connection.vendor


def _superuser_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    from metadata.models import Settings

    Settings.objects.current()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    client = Client()
    client.force_login(user)
    return client


def _row(i: int, start: dt.datetime, *, text_dates: bool) -> tuple:
    noun = NOUNS[i % len(NOUNS)]
    place = PLACES[(i // 7) % len(PLACES)]
    kind = i % 30
    if kind < 10:  # a third without alt text
        alt, source = "", ""
    elif kind < 13:  # a tenth guessed from the file name
        alt, source = f"{noun} photo", "heuristic"
    else:
        subject = "lighthouse" if i % 50 == 0 else f"red {noun}" if i % 3 else noun
        alt, source = f"A {subject} {place}", "ai"
    keywords = f"{noun}, {place.split()[-1]}" + (", kiwi" if i % 10_000 == 1234 else "")
    moment = start + dt.timedelta(seconds=i)
    if text_dates:  # SQLite: the text Django stores there (UTC, no offset)
        moment = moment.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"bench/{i}.jpg", "", f"IMG_{i:07d}.jpg", f"{i:064x}", "JPEG", 640, 480, 123_456,
        moment, moment, alt, f"{noun.title()} {i}" if kind > 20 else "", "", "", keywords,
        source, "ai" if kind > 20 else "", "", "", "ai",
        i % 50 == 7,
    )  # fmt: skip


def _build_to(size: int, built: int) -> int:
    from django.db import connection, transaction

    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    names = ", ".join(COLUMNS)
    while built < size:
        text_dates = connection.vendor == "sqlite"
        rows = [
            _row(i, start, text_dates=text_dates) for i in range(built, min(size, built + BATCH))
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY mediaopt_mediaasset ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(COLUMNS))
                cursor.executemany(
                    f"INSERT INTO mediaopt_mediaasset ({names}) VALUES ({marks})", rows
                )
        built += len(rows)
    return built


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # What autovacuum does to a table after a large import: the statistics, and
            # the GIN indexes' pending lists merged (a search reads the whole list).
            cursor.execute("VACUUM ANALYZE mediaopt_mediaasset")
        else:
            cursor.execute("ANALYZE")


def _get(client, query: str) -> None:
    response = client.get(f"/admin/mediaopt/mediaasset/?{query}")
    assert response.status_code == 200, (query, response.status_code)


def _ms(run) -> float:
    run()  # warm: the first request of a kind compiles templates and fills caches
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class _SqlTime:
    """Adds up the time the database answers take during a request."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started


def _timed(run) -> tuple[float, float]:
    """The median request time and the median of its SQL time, in ms."""
    from django.db import connection

    run()
    totals, sqls = [], []
    for _ in range(REPEAT):
        spent = _SqlTime()
        with connection.execute_wrapper(spent):
            started = time.perf_counter()
            run()
            totals.append((time.perf_counter() - started) * 1000)
        sqls.append(spent.seconds * 1000)
    return statistics.median(totals), statistics.median(sqls)


def _baseline() -> None:
    from django.db import connection

    from mediaopt.library.models import SEARCH_FIELDS

    def scalar(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            cursor.fetchone()

    # No index serves a bare column LIKE on either database (the trigram indexes are on
    # UPPER(column), the FTS table is a table of its own): the old search's read.
    like = " OR ".join(f"{name} LIKE '%kiwi%'" for name in SEARCH_FIELDS)
    count = "SELECT COUNT(*) FROM mediaopt_mediaasset"
    print(f"  {'baseline: SELECT COUNT(*)':<40} {_ms(lambda: scalar(count)):8.1f} ms")
    print(
        f"  {'baseline: COUNT(*) … LIKE %kiwi% (5 cols)':<40} "
        f"{_ms(lambda: scalar(f'{count} WHERE {like}')):8.1f} ms"
    )


def _explain() -> None:
    from django.db import connection

    from mediaopt.library.models import MediaAsset

    for label, queryset in (
        ("first page", MediaAsset.objects.all()),
        ("missing alt text", MediaAsset.objects.missing_alt_text()),
        ("search kiwi", MediaAsset.objects.search("kiwi")),
    ):
        sql, params = queryset[:100].query.sql_with_params()
        with connection.cursor() as cursor:
            prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
            cursor.execute(prefix + sql, params)
            plan = [" ".join(str(part) for part in row) for row in cursor.fetchall()]
        print(f"  plan, {label}:")
        for line in plan:
            print(f"    {line}")


if __name__ == "__main__":
    main()
