"""The database work of one image in a job: the statements the runner issues per image,
counted from the connection (savepoints aside: they exist only inside the test's own
transaction), by the module that issued them. Run with ``-s`` to see the table.

Per image, about 20 on SQLite: the claim (shared by a batch), the job's state, opening the
item, the image row, the limiter's database backend (3: the stripe locked with its block
and the clock read in one statement, the buckets, the count; none with Redis), the lease,
the hold (2), and the write: the item read locked, the duplicate check, the asset locked, the
revision, the asset, the item, the job's counts, the capture (3). Flat: the same per image
at 10 and at 40.
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import pytest
from django.db import connection

from metadata import runner
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

ROOT = str(Path(__file__).resolve().parents[2]) + "/"
PER_IMAGE = 21  # 32.7 before the ledger, the finish, the job reads and the limiter were cut


def statements_of_a_job(images: int) -> tuple[int, collections.Counter]:
    job = new_job(make_assets(images))
    seen: collections.Counter = collections.Counter()

    def count(execute, sql, params, many, context):
        if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):
            where = "?"
            for frame in reversed(traceback.extract_stack()[:-1]):
                inside = frame.filename.startswith(ROOT) and "/.venv/" not in frame.filename
                if inside and "/tests/" not in frame.filename:
                    where = f"{frame.filename[len(ROOT) :]}:{frame.name}"
                    break
            seen[(where, sql.split()[0])] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        runner.run_inline(job)
    return sum(seen.values()), seen


def table(images: int, seen: collections.Counter) -> str:
    rows = [f"{n / images:5.2f}  {verb:7} {where}" for (where, verb), n in seen.most_common()]
    return "\n".join([f"per image over {images} images:", *rows])


def test_the_statements_per_image_are_few_and_flat(fake_openai_settings, settings):
    settings.MEDIAOPT_JOB_CONCURRENCY = 4
    small, small_seen = statements_of_a_job(10)
    large, large_seen = statements_of_a_job(40)
    print(f"\n{table(40, large_seen)}\n{large / 40:.1f} per image at 40, {small / 10:.1f} at 10")

    assert large / 40 <= PER_IMAGE, table(40, large_seen)
    # Flat: the 30 more images cost what 30 images cost, nothing that grows with the job.
    assert (large - small) / 30 <= PER_IMAGE, (table(10, small_seen), table(40, large_seen))
