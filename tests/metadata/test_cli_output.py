"""The job commands' output as a person sees it: manage.py in a subprocess, its stdout a
pipe and its stderr a pipe or a pseudo-terminal, on a SQLite file of its own, with no
OpenAI key (the heuristic works the images)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from tests import factories
from tests.processes import ROOT

RED = "\x1b[31"  # Django paints errors "\x1b[31;1m"
DEBUG_LINES = ("this runner worked", "Enqueued [")
RUN_ALL = ("regenerate_metadata", "--all", "--strategy", "overwrite", "--force", "--inline")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    photos.mkdir()
    for index, colour in enumerate(("yellow", "blue", "green")):
        (photos / f"photo-{index}.jpg").write_bytes(factories.jpeg(40, 30, colour))
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
        "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
        "MEDIA_ROOT": str(root / "media"),
        "OPENAI_API_KEY": "",
        "LOG_LEVEL": "INFO",
    }
    environment.pop("PYTEST_CURRENT_TEST", None)
    manage(environment, "migrate", "--noinput", "-v", "0")
    manage(environment, "import_media", str(photos), "--no-generate")
    return environment


def manage(env, *args, stderr=subprocess.PIPE):
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=120,
        check=False,
    )
    # Decoded by hand: text=True would turn tqdm's \r redraws into lines of their own.
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode(),
        done.stderr.decode() if done.stderr is not None else "",
    )


def test_against_a_pipe_the_bar_is_uncoloured_and_drawn_once_with_one_summary_line(env):
    done = manage(env, *RUN_ALL)

    assert done.returncode == 0, done.stderr
    assert RED not in done.stderr
    assert done.stderr.count("100%") == 1, done.stderr
    assert [line for line in done.stdout.splitlines() if line] == [
        line for line in done.stdout.splitlines() if line.startswith("Job #")
    ]
    assert len(done.stdout.splitlines()) == 1, done.stdout
    assert not any(debug in done.stderr + done.stdout for debug in DEBUG_LINES)


def terminal() -> tuple[int, int]:
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide; tqdm would draw nothing in it.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def read_until_closed(master: int) -> str:
    drawn = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command has closed its side
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
    return drawn.decode(errors="replace")


def test_on_a_terminal_the_bar_has_no_red_and_no_debug_lines(env):
    # Both streams on terminals, as in a shell: only then does Django colour its stderr.
    err_master, err_slave = terminal()
    out_master, out_slave = terminal()
    process = subprocess.Popen(
        [sys.executable, "manage.py", *RUN_ALL],
        cwd=ROOT,
        env={**env, "TERM": "xterm-256color"},
        stdout=out_slave,
        stderr=err_slave,
    )
    os.close(err_slave)
    os.close(out_slave)
    text = read_until_closed(err_master)
    summary = read_until_closed(out_master)
    process.wait(timeout=120)

    assert process.returncode == 0, text
    assert "image" in text  # the bar was drawn on the terminal
    assert RED not in text
    # Redraws go back with \r on one line; only the closed bar ends with a newline.
    assert len([line for line in text.split("\n") if "image" in line]) == 1, repr(text)
    assert not any(debug in text for debug in DEBUG_LINES)
    assert len(summary.splitlines()) == 1, summary


def test_debug_lines_appear_with_verbosity_2(env):
    done = manage(env, *RUN_ALL, "-v", "2")

    assert "this runner worked" in done.stderr


def test_json_is_alone_on_stdout(env):
    done = manage(env, *RUN_ALL, "--json")

    report = json.loads(done.stdout)
    assert report["state"] == "completed"
    assert report["succeeded"] + report["skipped"] == report["total"] == 3


def test_next_page_is_offered_only_with_limit(env):
    whole = manage(env, *RUN_ALL)
    paged = manage(env, *RUN_ALL, "--limit", "2")

    assert "Next page" not in whole.stdout
    assert "Next page: --after-id" in paged.stdout


def test_a_pipe_closed_early_ends_the_command_without_a_traceback(env):
    process = subprocess.Popen(
        [sys.executable, "manage.py", *RUN_ALL],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # like `| head -1` gone before the summary is written
    _, errors = process.communicate(timeout=120)
    errors = errors.decode()

    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors
    assert process.returncode == 1
