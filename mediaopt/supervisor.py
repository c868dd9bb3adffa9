"""Runs the web server and the task clusters together, as one command a newcomer can start.

Each child gets its own session so a terminal's Ctrl-C reaches only us; we then stop each
child our own way. qcluster gets exactly one SIGTERM to its main process: signalling its
whole group, or twice, has deadlocked it (django-q2 #346). If any child dies, the
rest are stopped and we exit non-zero, so a process manager sees the failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

STOP_GRACE_SECONDS = 20


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None


def web_child(*, host: str, port: int, workers: int, threads: int) -> Child:
    return Child(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "mediaopt.wsgi:application",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--bind",
            f"{host}:{port}",
            "--access-logfile",
            "-",
            # Unused, and a second instance on the same machine would fight over its path.
            "--no-control-socket",
            # Long work never runs in a request; this only bounds a stuck one.
            "--timeout",
            "60",
        ],
    )


def cluster_child(name: str, cluster_name: str | None = None) -> Child:
    env = {"Q_CLUSTER_NAME": cluster_name} if cluster_name else {}
    return Child(name, [sys.executable, "manage.py", "qcluster"], env=env)


class Supervisor:
    def __init__(self, children: list[Child], *, log=print) -> None:
        self.children = children
        self.log = log
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            child.process = subprocess.Popen(
                child.argv, env={**os.environ, **child.env}, start_new_session=True
            )
            self.log(f"started {child.name} (pid {child.process.pid})")

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        """Start every child, wait until a signal or a child's death, stop the rest."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        exit_code = 0
        while not self.stopping:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    self.log(f"{child.name} exited with status {code}; stopping the rest")
                    exit_code = code or 1
                    self.stopping = True
                    break
            else:
                time.sleep(0.5)
        self.stop()
        return exit_code

    def stop(self) -> None:
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if not child.process:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{child.name} did not stop in {STOP_GRACE_SECONDS}s; killing it")
            # Whatever the child left behind (a cluster's sentinel and workers) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
