"""``migrate`` alone leaves a working installation: a cluster started on a freshly migrated
database logs no error (before, it logged "no such table: mediaopt_cache" twice a second,
because only the run script made the cache table)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.processes import ROOT, Cluster, cluster_env

pytestmark = pytest.mark.timeout(120)

WATCH_SECONDS = 10
TROUBLE = re.compile(r"error|exception|traceback|no such table", re.IGNORECASE)


def test_a_cluster_on_a_freshly_migrated_database_logs_no_error(tmp_path, fake_openai):
    database = tmp_path / "fresh.sqlite3"
    env = cluster_env(
        database=f"sqlite:///{database}",
        media_root=tmp_path / "media",
        openai_base_url=fake_openai.base_url,
        LOG_LEVEL="INFO",
    )
    env.pop("REDIS_URL", None)  # the embedded default: ORM broker, database cache
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        schedules = {row[0] for row in db.execute("SELECT name FROM django_q_schedule")}
    assert "mediaopt_cache" in tables
    assert {"mediaopt.recover", "mediaopt.prune_revisions"} <= schedules

    cluster = Cluster(env, tmp_path / "cluster.log")
    try:
        cluster.wait_until_running()
        time.sleep(WATCH_SECONDS)
    finally:
        survivors = cluster.stop_cleanly()
    output = cluster.output()

    assert [line for line in output.splitlines() if TROUBLE.search(line)] == []
    assert survivors == []
