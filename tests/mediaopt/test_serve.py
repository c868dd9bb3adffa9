"""The run command's supervisor: web and cluster start together and stop without leftovers."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import alive, group_members

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(90)
def test_serve_answers_http_and_stops_every_child_on_sigterm(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("exercised with the embedded default")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "STATIC_ROOT": str(tmp_path / "static"),
        "PYTHONUNBUFFERED": "1",
    }
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/admin/login/"
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                status = urllib.request.urlopen(url, timeout=2).status
            except OSError:
                time.sleep(0.2)
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    started = [line for line in out.splitlines() if line.startswith("started ")]
    assert {line.split()[1] for line in started} == {"web", "bulk", "interactive"}
    for line in started:
        pid = int(line.split("pid ")[1].rstrip(")"))
        assert not alive(pid)
        assert group_members(pid) == []
