"""Three heavy uploads at once through a real gunicorn worker: its peak RSS stays bounded.

gunicorn runs as the README's run command starts it (gthread), on a SQLite file of its
own; a superuser logs in through the admin's login form and three threads post one
heavy file each to the upload page at the same moment. The worker's high-water mark is
read from /proc (VmHWM) after the uploads.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from tests import hostile_corpus
from tests.processes import ROOT, group_members

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc"),
]

WORKER_BOUND_MB = 400
HEAVY = ("rle8-7999.bmp", "i16-7999.png", "progressive-7999.jpg")
UPLOAD = "/admin/mediaopt/mediaasset/upload/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def high_water_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


@pytest.fixture
def server(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'live.sqlite3'}",
        "MEDIAOPT_VAR_DIR": str(tmp_path),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MEDIAOPT_SYNC_TASKS": "0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    setup = (
        "import django; django.setup();"
        "from django.core.management import call_command; call_command('migrate', verbosity=0);"
        "from django.contrib.auth.models import User;"
        "User.objects.create_superuser('root', 'root@example.com', 'pw-for-tests')"
    )
    subprocess.run([sys.executable, "-c", setup], cwd=ROOT, env=env, check=True, timeout=120)
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "mediaopt.wsgi:application",
            "--worker-class",
            "gthread",
            "--workers",
            "1",
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx2.get(f"{base}/admin/login/", timeout=2)
                break
            except httpx2.TransportError:
                assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
        workers = [pid for pid in group_members(process.pid) if pid != process.pid]
        assert len(workers) == 1, workers
        yield base, workers[0], tmp_path / "live.sqlite3"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def logged_in(base: str) -> httpx2.Client:
    client = httpx2.Client(base_url=base, timeout=120)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={"username": "root", "password": "pw-for-tests", "csrfmiddlewaretoken": token},
    )
    assert answer.status_code == 302, answer.text[:500]
    return client


def test_three_heavy_uploads_at_once_keep_the_gunicorn_worker_under_400_mb(
    server, tmp_path_factory
):
    import sqlite3

    base, worker, database = server
    corpus = hostile_corpus.write_corpus(
        tmp_path_factory.getbasetemp() / "hostile-upload-corpus",
        tuple(entry for entry in hostile_corpus.CORPUS if entry.name in HEAVY),
    )
    before = high_water_mb(worker)
    clients = [logged_in(base) for _ in HEAVY]
    tokens = []
    for client in clients:
        page = client.get(UPLOAD)
        tokens.append(re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1])
    statuses: list[int] = []
    start = threading.Barrier(len(HEAVY))

    def upload(client: httpx2.Client, token: str, name: str) -> None:
        with corpus[name].open("rb") as handle:
            start.wait()
            answer = client.post(
                UPLOAD,
                data={"csrfmiddlewaretoken": token},
                files={"files": (name, handle, "application/octet-stream")},
            )
        statuses.append(answer.status_code)

    threads = [
        threading.Thread(target=upload, args=(client, token, name))
        for client, token, name in zip(clients, tokens, HEAVY, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert statuses == [302, 302, 302]
    with sqlite3.connect(database) as db:
        names = {row[0] for row in db.execute("select original_name from mediaopt_mediaasset")}
    assert names == set(HEAVY)
    peak = high_water_mb(worker)
    print(f"gunicorn worker: {before:.0f} MB before, {peak:.0f} MB peak")
    assert peak < WORKER_BOUND_MB
