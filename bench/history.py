"""History at scale: undoing a large job, its preview, and retention's pruning.

Builds a library of ``--images`` images (no files: the undo reads no image) whose every
image a bulk job changed, with a tenth edited by hand afterwards (conflicts), then
measures on SQLite (default) or PostgreSQL (``--database postgres``):

- the undo confirmation's preview, in milliseconds (its query count is constant);
- undoing the job, worked to the end in this process: images per second;
- pruning ``--history`` old revisions per image down to the retention settings:
  revisions deleted per second.

Not part of the test suite::

    .venv/bin/python bench/history.py --images 10000
    .venv/bin/python bench/history.py --images 10000 --database postgres
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=5, help="old revisions per image")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-") as tmp:
        workdir = Path(tmp)
        if args.database == "postgres":
            name = f"mediaopt_bench_{uuid.uuid4().hex[:8]}"
            url = f"postgres://postgres@127.0.0.1:5432/{name}"
        else:
            name, url = "", f"sqlite:///{workdir / 'bench.sqlite3'}"
        os.environ.pop("REDIS_URL", None)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
                "DATABASE_URL": url,
                "MEDIAOPT_VAR_DIR": str(workdir),
                "MEDIA_ROOT": str(workdir / "media"),
                "MEDIAOPT_SYNC_TASKS": "0",
                "LOG_LEVEL": "WARNING",
            }
        )
        if name:
            _create_database(name)
        try:
            run(args.images, args.history)
        finally:
            if name:
                from django.db import connections

                connections.close_all()
                _drop_database(name)


def _admin_connection():
    import psycopg

    return psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)


def _create_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(count: int, history: int) -> None:
    import django

    django.setup()
    from datetime import timedelta

    from django.core.management import call_command
    from django.db import connection
    from django.db.models import OuterRef, Subquery
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from mediaopt.library.fields import Source
    from mediaopt.library.models import MediaAsset
    from metadata import revisions, runner, undo
    from metadata.models import JobKind, JobState, MetadataRevision, RegenerationJob, RevisionKind
    from metadata.strategies import FieldChange, Plan
    from tests.factories import bare_assets

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    old = timezone.now() - timedelta(days=400)
    assets = bare_assets(count)
    rows = []
    for asset in assets:
        for number in range(1, history + 1):
            rows.append(
                MetadataRevision(
                    asset=asset,
                    number=number,
                    kind=RevisionKind.IMPORT if number == 1 else RevisionKind.MANUAL,
                    title=f"old title {number}",
                    title_source=Source.MANUAL,
                )
            )
    MetadataRevision.objects.bulk_create(rows, batch_size=2000)
    MetadataRevision.objects.update(created_at=old)
    job = RegenerationJob.objects.create(
        kind=JobKind.BULK, state=JobState.COMPLETED, finished_at=timezone.now()
    )
    last = MetadataRevision.objects.filter(asset=OuterRef("pk"), number=history)
    MediaAsset.objects.update(current_revision=Subquery(last.values("pk")[:1]))
    print(
        f"built {count:,} images x {history} old revisions in {time.perf_counter() - started:.1f} s"
    )

    # The job: an AI alt text on every image (through revisions.py, as a runner would).
    started = time.perf_counter()
    for asset in MediaAsset.objects.select_related("current_revision").iterator(chunk_size=2000):
        revisions.apply_plan(
            asset=asset,
            plan=Plan(changes={"alt_text": FieldChange(f"AI {asset.pk}", Source.AI)}),
            based_on_revision_id=asset.current_revision_id,
            job=job,
            provider="openai",
            model="bench",
        )
    print(f"job wrote {count:,} revisions in {time.perf_counter() - started:.1f} s")
    for asset in MediaAsset.objects.filter(pk__in=[a.pk for a in assets[::10]]):
        revisions.apply_manual(
            asset=asset,
            values={**asset.values(), "alt_text": "typed later"},
            is_decorative=False,
            changed_fields=["alt_text"],
            actor=None,
            based_on_revision_id=asset.current_revision_id,
        )

    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        preview = undo.preview(job)
        preview_ms = (time.perf_counter() - started) * 1000
    print(
        f"undo preview: {preview_ms:.0f} ms, {len(captured.captured_queries)} queries "
        f"({preview.images:,} images, {preview.changed_since:,} changed since)"
    )

    undo_job = undo.start(job=job, queue_it=False).job
    started = time.perf_counter()
    runner.run_inline(undo_job)
    seconds = time.perf_counter() - started
    undo_job.refresh_from_db()
    result = undo.result(undo_job)
    print(
        f"undo job ({undo_job.state}): {count:,} images in {seconds:.1f} s = "
        f"{count / seconds:,.0f} images/s; {result.restored:,} restored, "
        f"{result.kept_total:,} with kept fields"
    )

    # Retention: the job and its undo finished long ago, so nothing protects the old ones.
    RegenerationJob.objects.update(finished_at=old)
    MetadataRevision.objects.update(created_at=old)
    total = MetadataRevision.objects.count()
    started = time.perf_counter()
    removed = revisions.prune(keep=2, days=90)
    seconds = time.perf_counter() - started
    print(
        f"prune to the latest 2 per image: {removed:,} of {total:,} revisions in {seconds:.1f} s"
        f" = {removed / seconds:,.0f} revisions/s"
    )


if __name__ == "__main__":
    main()
