"""Creating "Regenerate all" at N images: the time from the confirmation to a queued job,
and the longest single write transaction (what holds SQLite's write lock), on SQLite or
PostgreSQL. Not part of the test suite::

    .venv/bin/python bench/create.py --images 100000 1000000
    .venv/bin/python bench/create.py --images 100000 1000000 \\
        --database postgres://postgres@127.0.0.1:5432/mediaopt_creation_bench

The library is built with tests/factories.bare_assets (rows without files) in a fresh
database (a temporary SQLite file, or the PostgreSQL database named, dropped and created
again). The items are made in the request's process (the task's path runs the same
chunks), so the figures are those of bulk.confirm plus bulk.prepare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import recreate  # noqa: E402

BUILD_SLICE = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100_000])
    parser.add_argument("--database", default="", help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "mediaopt.settings", "LOG_LEVEL": "WARNING"})
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-create-") as var:
        os.environ["MEDIAOPT_VAR_DIR"] = var
        if args.database:
            os.environ["DATABASE_URL"] = args.database
            recreate(args.database)
        else:
            os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        built = 0
        for count in sorted(args.images):
            built = _build_to(count, built)
            measure(count)


def _build_to(count: int, built: int) -> int:
    from tests.factories import bare_assets

    started = time.perf_counter()
    while built < count:
        n = min(BUILD_SLICE, count - built)
        bare_assets(n, start=built)
        built += n
    print(f"library: {count:,} images (built in {time.perf_counter() - started:.1f} s)")
    return built


class Transactions:
    """Times each write transaction on the default connection: an atomic block from
    BEGIN to COMMIT, or one statement in autocommit; reads in autocommit apart."""

    def __init__(self) -> None:
        self.longest_write = 0.0
        self.longest_read = 0.0
        self.writes = 0
        self._began: float | None = None

    def install(self, connection) -> None:
        real_set_autocommit = connection.set_autocommit

        def set_autocommit(autocommit: bool, **kwargs):
            if not autocommit:
                self._began = time.perf_counter()
            elif self._began is not None:
                self._close()
            return real_set_autocommit(autocommit, **kwargs)

        connection.set_autocommit = set_autocommit
        connection.execute_wrappers.append(self._statement)

    def _close(self) -> None:
        self.longest_write = max(self.longest_write, time.perf_counter() - self._began)
        self.writes += 1
        self._began = None

    def _statement(self, execute, sql, params, many, context):
        if self._began is not None:
            return execute(sql, params, many, context)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - started
            if sql.lstrip().upper().startswith("SELECT"):
                self.longest_read = max(self.longest_read, spent)
            else:
                self.longest_write = max(self.longest_write, spent)
                self.writes += 1


def measure(count: int) -> None:
    from django.conf import settings
    from django.db import connection

    from metadata import bulk, jobs
    from metadata.models import JobItem, JobState, Settings, Strategy

    Settings.objects.current()
    options = bulk.BulkOptions(fields=("alt_text",), strategy=Strategy.FILL_EMPTY)
    draft = bulk.draft_bulk(actor=None)
    log = Transactions()
    log.install(connection)
    settings.MEDIAOPT_JOB_PREPARE_IN_TASK_ABOVE = 0  # the task's path, run here
    started = time.perf_counter()
    result = bulk.confirm(job=draft, options=options, actor=None)
    confirmed = time.perf_counter() - started
    bulk.prepare(job_id=draft.pk)
    total = time.perf_counter() - started
    connection.execute_wrappers.remove(log._statement)
    del connection.set_autocommit
    draft.refresh_from_db()
    items = JobItem.objects.filter(job=draft).count()
    print(
        f"{count:,} images on {connection.vendor}: queued job with {items:,} items in "
        f"{total:.1f} s (confirmation answered in {confirmed:.2f} s); longest write "
        f"transaction {log.longest_write:.2f} s of {log.writes}; longest read "
        f"{log.longest_read:.2f} s; state {draft.state}"
    )
    assert result.started and draft.state == JobState.QUEUED and items == count
    jobs.cancel(draft)


if __name__ == "__main__":
    main()
