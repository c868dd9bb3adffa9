"""Bulk throughput against a rate-limited provider, side by side with naive clients.

The fake OpenAI server answers after ``--latency`` seconds and enforces ``--rpm``
requests a minute with its own 429s and x-ratelimit headers (a sliding 60-second window).
Against a fresh server each time, it measures:

- a sequential loop over the official SDK (one call after another),
- a pool of 8 threads over the SDK (each thread one call after another),
- mediaopt at the shipped settings (no concurrency or batch override): a fresh database
  and media folder, ``--images`` generated images, the Settings row's requests-per-minute
  set to the server's limit (what a user copies from the dashboard; the token budget left
  at its default), one bulk job worked by one real ``qcluster``, then by two.

Not part of the test suite::

    .venv/bin/python bench/throughput.py --backend sqlite      # SQLite + ORM broker
    .venv/bin/python bench/throughput.py --backend postgres    # PostgreSQL + Redis db 3

The rate is measured from the first accepted request to the last (the naive clients run
for ``--baseline-seconds``). An empty window lets the first minute's worth of the limit
through at any pace, so a job shorter than a minute of the limit can pass 100 %.

Measured on a shared 2-core machine (600 rpm, 2.5 s, defaults otherwise), in images a
minute and share of the limit, no 429s anywhere: sequential 24 (4 %), pool of 8 203
(34 %); SQLite 600 images 724 (121 %) with one cluster, 736 (123 %) with two; SQLite
1,200 images 626 (104 %). PostgreSQL + Redis, 600 images: 313 (52 %) until the Redis
limiter's block was fixed (a block on Redis's clock was stored as '', and every admission
after it ended the runner until recover() sent another); then 759 (126 %) with one runner
a job (``MEDIAOPT_JOB_RUNNERS=1``) and 1,436 (239 %) with the default two, on one cluster
or two alike. A job of 600 images fits in the first window, so these are the runners'
own pace: two runners are 1.89x one. ``MEDIAOPT_JOB_RUNNERS=4 --images 1200 --rpm 1200``:
778 with one cluster, 574 with two (the fake server, both clusters and PostgreSQL share
the two cores; the token budget as shipped binds near 1,400 a minute).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "brown", "gray"]
PG_DATABASE = "mediaopt_adaptive_bench"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--latency", type=float, default=2.5)
    parser.add_argument("--rpm", type=int, default=600, help="the fake server's limit")
    parser.add_argument("--clusters", default="1,2", help="mediaopt runs, e.g. 1,2")
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="override the shipped cap (default: none)"
    )
    parser.add_argument("--seconds", type=float, default=900, help="give up after this long")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def fake_server(args: argparse.Namespace):
    from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI

    return FakeOpenAI(
        api_key=FAKE_API_KEY,
        latency=args.latency,
        requests_per_minute=args.rpm,
        tokens_per_minute=10**9,
        enforce_limit=True,
    ).start()


def figures(fake, *, images: int | None = None) -> dict:
    requests = list(fake.requests)
    accepted = sorted(request.at for request in requests if request.status == 200)
    rejected = sum(1 for request in requests if request.status == 429)
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    per_minute = (len(accepted) - 1) * 60 / span if span else 0.0
    return {
        "accepted": len(accepted),
        "requests": len(requests),
        "rejected": rejected,
        "per_minute": per_minute,
        "most_in_flight": fake.max_in_flight,
        "images": images,
    }


# -- the naive clients ---------------------------------------------------------------------


def _jpeg(i: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (48 + i % 100, 32), COLOURS[i % len(COLOURS)]).save(out, "JPEG")
    return out.getvalue()


def naive(args: argparse.Namespace, *, threads: int) -> dict:
    """``threads`` threads calling the SDK one call after another for a fixed time."""
    import base64

    import openai

    from tests.fakeopenai import FAKE_API_KEY

    fake = fake_server(args)
    client = openai.OpenAI(api_key=FAKE_API_KEY, base_url=fake.base_url, max_retries=0)
    deadline = time.monotonic() + args.baseline_seconds
    counter = iter(range(10**9))
    lock = threading.Lock()

    def loop() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(counter)
            url = "data:image/jpeg;base64," + base64.b64encode(_jpeg(i)).decode()
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "Describe this image."},
                                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                            ],
                        }
                    ],
                )
            except openai.RateLimitError:
                time.sleep(1.0)

    try:
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(threads):
                pool.submit(loop)
        return figures(fake)
    finally:
        fake.stop()


# -- mediaopt, in a child process per run (one database each) --------------------------------


def configure(args: argparse.Namespace, workdir: Path) -> str:
    """Environment for this process and the clusters (which copy it); the database URL."""
    if args.backend == "postgres":
        admin = f"{args.postgres}/postgres"
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {PG_DATABASE}"], check=True)
        subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {PG_DATABASE}"], check=True)
        database = f"{args.postgres}/{PG_DATABASE}"
        os.environ["REDIS_URL"] = args.redis
        import redis

        redis.Redis.from_url(args.redis).flushdb()  # this bench's own db: the broker's queue
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


def drop_database(args: argparse.Namespace) -> None:
    if args.backend == "postgres":
        from django.db import connections

        connections.close_all()
        subprocess.run(
            ["psql", f"{args.postgres}/postgres", "-qc", f"DROP DATABASE IF EXISTS {PG_DATABASE}"],
            check=False,
        )


def shipped_env(env: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    """The clusters' environment without the test harness's job settings: the shipped
    defaults, but for the one override asked for."""
    from tests.processes import JOB_ENV

    for name in [*JOB_ENV, "OPENAI_TIMEOUT", "MEDIAOPT_RETRY_BASE_SECONDS", "MEDIAOPT_Q_TIMEOUT"]:
        env.pop(name, None)
        if name in os.environ:
            env[name] = os.environ[name]  # what the person running the bench set
    if args.concurrency is not None:
        env["MEDIAOPT_JOB_CONCURRENCY"] = str(args.concurrency)
    return env


def one_run(args: argparse.Namespace, clusters: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-") as tmp:
        workdir = Path(tmp)
        database = configure(args, workdir)
        try:
            return _mediaopt(args, workdir, database, clusters)
        finally:
            drop_database(args)


def _mediaopt(args: argparse.Namespace, workdir: Path, database: str, clusters: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    from metadata import intake, jobs, progress
    from metadata.models import JobKind, JobState, Settings
    from tests import factories
    from tests.billing.helpers import funded_account
    from tests.processes import Cluster, cluster_env

    call_command("migrate", verbosity=0)
    ids = []
    for i in range(args.images):
        data = factories.jpeg(48 + i % 100, 32 + i // 100, color=COLOURS[i % len(COLOURS)])
        ids.append(intake.import_file(source=data, original_name=f"IMG_{i:05}.jpg").asset.pk)
    row = Settings.objects.current()
    row.requests_per_minute = args.rpm  # from the provider's dashboard; tokens as shipped
    row.save()
    funded_account(credits=args.images * 2, plan="agency")

    fake = fake_server(args)
    env = shipped_env(
        cluster_env(
            database=database,
            media_root=workdir / "media",
            openai_base_url=fake.base_url,
            LOG_LEVEL="INFO",  # the cluster says it runs
        ),
        args,
    )
    started = [Cluster(env, workdir / f"cluster{n}.log") for n in range(clusters)]
    try:
        for cluster in started:
            cluster.wait_until_running(seconds=60)
        job = jobs.create_job(kind=JobKind.BULK, asset_ids=ids).job
        enqueued = time.monotonic()
        jobs.enqueue(job)
        while time.monotonic() - enqueued < args.seconds:
            time.sleep(0.5)
            job.refresh_from_db()
            if job.state not in {JobState.QUEUED, JobState.RUNNING}:
                break
        counts = progress.progress(job)
        result = figures(fake, images=counts.succeeded)
        result["state"] = str(job.state)
        result["seconds"] = time.monotonic() - enqueued
        return result
    finally:
        for cluster in started:
            cluster.stop()
        fake.stop()
        for cluster in started:
            if "Traceback" in cluster.output():
                print(cluster.output()[-3000:], file=sys.stderr)


def child(args: argparse.Namespace, clusters: int) -> dict:
    argv = [sys.executable, __file__, "--one", str(clusters)]
    for name in ("backend", "images", "latency", "rpm", "seconds", "postgres", "redis"):
        argv += [f"--{name}", str(getattr(args, name))]
    if args.concurrency is not None:
        argv += ["--concurrency", str(args.concurrency)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"run with {clusters} cluster(s) failed:\n{done.stderr[-3000:]}")


def line(name: str, result: dict, rpm: int) -> str:
    rejected = result["rejected"] / max(result["requests"], 1)
    images = "" if result["images"] is None else f"{result['images']:>6}"
    return (
        f"{name:<28} {images:>6} {result['per_minute']:>8.0f} {result['per_minute'] / rpm:>7.0%}"
        f" {result['rejected']:>5} {rejected:>7.2%} {result['most_in_flight']:>9}"
    )


def main() -> None:
    args = parse()
    if args.one is not None:
        print("RESULT " + json.dumps(one_run(args, args.one)))
        return
    print(
        f"{args.rpm} requests a minute, {args.latency:g} s latency, {args.images} images, "
        f"backend {args.backend}, concurrency "
        f"{'shipped' if args.concurrency is None else args.concurrency}"
    )
    rows = []
    if not args.skip_baselines:
        rows.append(("sequential loop (SDK)", naive(args, threads=1)))
        rows.append(("pool of 8 threads (SDK)", naive(args, threads=8)))
    for clusters in [int(n) for n in args.clusters.split(",") if n]:
        rows.append((f"mediaopt, {clusters} cluster(s)", child(args, clusters)))
    heads = ("images", 6), ("per min", 8), ("limit", 7), ("429s", 5), ("429 %", 7)
    print(f"{'':<28} " + " ".join(f"{h:>{w}}" for h, w in heads) + f" {'in flight':>9}")
    for name, result in rows:
        print(line(name, result, args.rpm))


if __name__ == "__main__":
    main()
