"""Bulk throughput against a rate-limited provider, with real qcluster processes.

A fresh database and media folder, N generated small images, the fake OpenAI server
answering after ``--latency`` seconds and enforcing ``--rpm`` requests a minute with its
own 429s and x-ratelimit headers (a sliding 60-second window), one bulk job worked by a
real ``qcluster``. Prints images per minute, the share of the limit reached and the 429s
received. Not part of the test suite::

    .venv/bin/python bench/throughput.py --backend sqlite      # SQLite + ORM broker
    .venv/bin/python bench/throughput.py --backend postgres    # PostgreSQL + Redis

The steady rate is measured from the first finished image to the last (the first call
needs ``--latency`` seconds whatever the limiter does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "brown", "gray"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=2.5)
    parser.add_argument("--rpm", type=int, default=600, help="the fake server's limit")
    parser.add_argument("--concurrency", type=int, default=25, help="calls in flight per runner")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers")
    parser.add_argument("--seconds", type=float, default=600, help="give up after this long")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    return parser.parse_args()


def configure(args: argparse.Namespace, workdir: Path) -> str:
    """Environment for this process and the cluster (which copies it); the database URL."""
    if args.backend == "postgres":
        name = f"mediaopt_bench_{os.getpid()}"
        subprocess.run(
            ["psql", f"{args.postgres}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True
        )
        database = f"{args.postgres}/{name}"
        os.environ["REDIS_URL"] = args.redis
    else:
        database = f"sqlite:///{workdir / 'bench.sqlite3'}"
        os.environ.pop("REDIS_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
            "DATABASE_URL": database,
            "MEDIAOPT_VAR_DIR": str(workdir),
            "MEDIA_ROOT": str(workdir / "media"),
            "MEDIAOPT_GENERATE_ON_UPLOAD": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    return database


def drop_database(args: argparse.Namespace, database: str) -> None:
    if args.backend == "postgres":
        from django.db import connections

        connections.close_all()
        name = database.rsplit("/", 1)[1]
        subprocess.run(
            ["psql", f"{args.postgres}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"],
            check=False,
        )


def main() -> None:
    args = parse()
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-") as tmp:
        workdir = Path(tmp)
        database = configure(args, workdir)
        try:
            run(args, workdir, database)
        finally:
            drop_database(args, database)


def run(args: argparse.Namespace, workdir: Path, database: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from metadata import intake, jobs, progress
    from metadata.models import JobKind, JobState, Settings
    from tests import factories
    from tests.billing.helpers import funded_account
    from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI
    from tests.processes import Cluster, cluster_env

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    ids = []
    for i in range(args.images):
        data = factories.jpeg(48 + i % 100, 32 + i // 100, color=COLOURS[i % len(COLOURS)])
        ids.append(intake.import_file(source=data, original_name=f"IMG_{i:05}.jpg").asset.pk)
    print(f"imported {len(set(ids))} images in {time.monotonic() - started:.1f} s")
    row = Settings.objects.current()
    row.requests_per_minute = args.rpm
    row.tokens_per_minute = 0  # the fake enforces requests only
    row.save()
    funded_account(credits=args.images * 2, plan="agency")

    fake = FakeOpenAI(
        api_key=FAKE_API_KEY,
        latency=args.latency,
        requests_per_minute=args.rpm,
        tokens_per_minute=10**9,
        enforce_limit=True,
    ).start()
    env = cluster_env(
        database=database,
        media_root=workdir / "media",
        openai_base_url=fake.base_url,
        OPENAI_TIMEOUT="30",
        MEDIAOPT_WORKERS=str(args.workers),
        MEDIAOPT_Q_TIMEOUT="300",
        MEDIAOPT_JOB_RUN_SECONDS="120",
        MEDIAOPT_JOB_LEASE_SECONDS="120",
        MEDIAOPT_JOB_RUNNER_STALE_SECONDS="120",
        MEDIAOPT_JOB_BATCH_SIZE="4",
        MEDIAOPT_JOB_CONCURRENCY=str(args.concurrency),
        MEDIAOPT_RETRY_BASE_SECONDS="1",
        LOG_LEVEL="INFO",
    )
    cluster = Cluster(env, workdir / "cluster.log")
    try:
        cluster.wait_until_running(seconds=60)
        job = jobs.create_job(kind=JobKind.BULK, asset_ids=ids).job
        enqueued = time.monotonic()
        jobs.enqueue(job)
        first_done = None
        while time.monotonic() - enqueued < args.seconds:
            time.sleep(0.5)
            job.refresh_from_db()
            counts = progress.progress(job)
            if first_done is None and counts.done:
                first_done = time.monotonic()
            if job.state not in {JobState.QUEUED, JobState.RUNNING}:
                break
        ended = time.monotonic()
        report(args, job, progress.progress(job), fake, enqueued, first_done, ended)
    finally:
        cluster.stop()
        fake.stop()
        if "Traceback" in cluster.output():
            print(cluster.output()[-3000:])


def report(args, job, progress, fake, enqueued, first_done, ended) -> None:
    requests = fake.request_count
    rejected = sum(1 for request in list(fake.requests) if request.status == 429)
    overall = progress.succeeded * 60 / (ended - enqueued)
    steady = (
        (progress.succeeded - 1) * 60 / (ended - first_done)
        if first_done and ended > first_done
        else 0.0
    )
    print(f"backend: {args.backend}; job {job.pk} {job.state}: {progress}")
    print(
        f"images: {progress.succeeded} in {ended - enqueued:.1f} s "
        f"(first result after {(first_done or ended) - enqueued:.1f} s)"
    )
    print(f"images per minute, overall: {overall:.0f} ({overall / args.rpm:.0%} of the limit)")
    print(f"images per minute, steady:  {steady:.0f} ({steady / args.rpm:.0%} of the limit)")
    print(
        f"requests: {requests}, 429s: {rejected} ({rejected / max(requests, 1):.2%}), "
        f"most in flight: {fake.max_in_flight}"
    )


if __name__ == "__main__":
    main()
