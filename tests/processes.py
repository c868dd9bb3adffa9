"""Real ``qcluster`` processes for tests: started in their own session, stopped with one
SIGTERM to the main process, and proven gone (a SIGKILL of the main process alone
leaves its sentinel and workers running).

Used by tests/services (PostgreSQL) and tests/browser (the live server's SQLite file).
Subprocesses get the database, the media folder, the fake OpenAI server and the job
tuning through their environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fakeopenai import FAKE_API_KEY

ROOT = Path(__file__).resolve().parents[1]

# Short leases so that deaths are noticed within seconds; the services' job_env fixture
# gives recover() in the test process the same values through settings.
JOB_ENV = {
    "MEDIAOPT_JOB_LEASE_SECONDS": "4",
    "MEDIAOPT_JOB_RUNNER_STALE_SECONDS": "4",
    "MEDIAOPT_JOB_MAX_ATTEMPTS": "3",
    "MEDIAOPT_JOB_BATCH_SIZE": "2",
    "MEDIAOPT_JOB_RUN_SECONDS": "10",
    "MEDIAOPT_JOB_MAX_SLEEP_SECONDS": "0.5",
    # One call at a time: these tests count claims exactly (a frozen worker holds one
    # item; a poison image's death costs no other item an attempt).
    "MEDIAOPT_JOB_CONCURRENCY": "1",
}

RUNNING = re.compile(r"Q Cluster \S+ \[(?P<queue>[^\]]+)\] running")


def database_url(settings_dict: dict) -> str:
    """The test database as a URL a subprocess's settings understand."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}"
        f"@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


def cluster_env(
    *,
    database: str,
    media_root: Path | str,
    openai_base_url: str,
    cluster_name: str | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        **JOB_ENV,
        "DATABASE_URL": database,
        "MEDIA_ROOT": str(media_root),
        "OPENAI_API_KEY": FAKE_API_KEY,
        "OPENAI_BASE_URL": openai_base_url,
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
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
            [sys.executable, "-m", "tests.cluster_main"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.process.pid

    def members(self) -> list[int]:
        return group_members(self.pgid)

    def wait_until_running(self, *, seconds: float = 30) -> None:
        """Until the cluster logs that it runs (needs LOG_LEVEL=INFO); fail with its log
        if it exits or takes too long."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if RUNNING.search(self.output()):
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"qcluster exited with {self.process.returncode}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)
        raise RuntimeError(f"qcluster not running after {seconds:.0f}s:\n{self.output()[-3000:]}")

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
        """One SIGTERM to the main process (never the group, never twice: that has
        deadlocked qcluster)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        if self.members():
            self.signal_group(signal.SIGCONT)
            self.kill()
        self._log.close()

    def stop_cleanly(self, *, seconds: float = 30) -> list[int]:
        """One SIGTERM; returns the pids still alive after ``seconds`` (should be none)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=seconds)
        deadline = time.monotonic() + 5
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = self.members()
        if survivors:
            self.signal_group(signal.SIGCONT)
            self.kill()
        self._log.close()
        return survivors

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")
