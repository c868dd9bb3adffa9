"""Real ``qcluster`` processes on PostgreSQL, talking to the session's fake OpenAI server.

Run them in their own pytest invocation against PostgreSQL, so pytest-django's test
database (``test_mediaopt``) is a real server the subprocesses can share::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt \\
        .venv/bin/pytest -q -p no:randomly tests/services

On SQLite (the main run) every test here skips, or fails under MEDIAOPT_REQUIRE_SERVICES=1.
Subprocesses get the test database's name, the test's MEDIA_ROOT, the fake server's URL
and key, and short leases, through their environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import skip_or_fail
from tests.fakeopenai import FAKE_API_KEY

ROOT = Path(__file__).resolve().parents[2]

# Short leases so that deaths are noticed within seconds; recover() in the test process
# reads the same values from the environment.
JOB_ENV = {
    "MEDIAOPT_JOB_LEASE_SECONDS": "4",
    "MEDIAOPT_JOB_RUNNER_STALE_SECONDS": "4",
    "MEDIAOPT_JOB_MAX_ATTEMPTS": "3",
    "MEDIAOPT_JOB_BATCH_SIZE": "2",
    "MEDIAOPT_JOB_RUN_SECONDS": "10",
    "MEDIAOPT_JOB_MAX_SLEEP_SECONDS": "0.5",
}


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies waiting for init do not count)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True)
    pids = []
    for line in out.stdout.splitlines():
        pid, group, stat = line.split()[:3]
        if int(group) == pgid and not stat.startswith("Z"):
            pids.append(int(pid))
    return pids


class Cluster:
    """One ``qcluster`` in its own session (so its whole process group can be killed)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.services.cluster_main"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.process.pid

    def members(self) -> list[int]:
        return group_members(self.pgid)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signum)

    def kill(self) -> None:
        """SIGKILL every process of the cluster, and prove none survives."""
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.members() == [], f"survivors of the cluster: {self.members()}"

    def stop(self) -> None:
        """One SIGTERM to the main process (NOTES.md: never the group, never twice)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        if self.members():
            self.signal_group(signal.SIGCONT)
            self.kill()
        self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def services_db(django_db_blocker) -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "tests/services need PostgreSQL: run them with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt"
        )


@pytest.fixture
def job_env(monkeypatch) -> dict[str, str]:
    for name, value in JOB_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(JOB_ENV)


@pytest.fixture
def start_cluster(
    services_db, job_env, fake_openai_settings, tmp_path
) -> Iterator[Callable[..., Cluster]]:
    """Start clusters sharing the test database, media and fake server; stop them all."""
    clusters: list[Cluster] = []
    db = connection.settings_dict

    def start(*, cluster_name: str | None = None, **extra: str) -> Cluster:
        env = {
            **os.environ,
            **job_env,
            "DATABASE_URL": (
                f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}"
                f"/{db['NAME']}"
            ),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "OPENAI_API_KEY": FAKE_API_KEY,
            "OPENAI_BASE_URL": fake_openai_settings.base_url,
            "OPENAI_TIMEOUT": "1",
            "MEDIAOPT_RETRY_BASE_SECONDS": "0.2",
            "MEDIAOPT_WORKERS": "2",
            "MEDIAOPT_Q_TIMEOUT": "60",
            "MEDIAOPT_SYNC_TASKS": "0",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
        env.pop("Q_CLUSTER_NAME", None)
        if cluster_name:
            env["Q_CLUSTER_NAME"] = cluster_name
        cluster = Cluster(env, tmp_path / f"cluster-{len(clusters)}.log")
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()
