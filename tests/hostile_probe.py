"""Import files in child processes and report each child's peak memory, as JSON lines.

Run by tests/mediaopt/test_hostile_files.py (and bench/local.py), never imported by the
suite itself: Django is set up here, once, on a file database of its own; then every file
is imported in a forked child (as a worker that already has Django loaded would), and its
peak RSS is read from the kernel's accounting of that child::

    python tests/hostile_probe.py --workdir DIR [--route path|upload] [--together]
        [--jobs N] FILE...

Per file, the child imports it (``ingest.import_file``, from a path as ``import_media``
does, or from a Django upload object as the admin does; the import makes the thumbnail),
then, if it was imported, renders the preview from the stored file as a job would. With
``--together`` one child does all the files at once, one thread each (a gunicorn worker
serving several uploads). The last line is the peak of all children together, from
``resource.getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(workdir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'probe.sqlite3'}",
            "MEDIAOPT_VAR_DIR": str(workdir),
            "MEDIA_ROOT": str(workdir / "media"),
            "MEDIAOPT_GENERATE_ON_UPLOAD": "0",
            "MEDIAOPT_SYNC_TASKS": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # Everything a worker has loaded before its first image.
    from mediaopt.library import images, ingest  # noqa: F401
    from metadata import revisions  # noqa: F401


def _upload(path: Path):
    """The object Django hands the admin for a file this size (memory up to 10 MB)."""
    from django.conf import settings
    from django.core.files.uploadedfile import InMemoryUploadedFile, TemporaryUploadedFile

    size = path.stat().st_size
    if size <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
        import io

        data = io.BytesIO(path.read_bytes())
        return InMemoryUploadedFile(data, "files", path.name, "image/png", size, None)
    upload = TemporaryUploadedFile(path.name, "image/png", size, None)
    with path.open("rb") as handle:
        shutil.copyfileobj(handle, upload)
    upload.flush()
    return upload


def _one(path: Path, route: str) -> dict:
    from mediaopt.library import images, ingest

    source = _upload(path) if route == "upload" else path
    try:
        outcome = ingest.import_file(source=source, original_name=path.name)
    except BaseException as exc:  # the test asserts there is none
        return {"name": path.name, "status": "raised", "reason": repr(exc)[:300]}
    result = {"name": path.name, "status": outcome.status, "reason": outcome.reason}
    if outcome.asset is not None and outcome.status == ingest.IMPORTED:
        try:
            with outcome.asset.file.open("rb") as handle:
                images.preview(handle)
        except images.ImageError as exc:
            result["render_error"] = exc.reason
    return result


def _child(paths: list[Path], route: str, write_fd: int) -> None:
    from django.db import connections

    connections.close_all()
    results: list[dict] = [{} for _ in paths]

    def work(i: int) -> None:
        results[i] = _one(paths[i], route)
        connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with os.fdopen(write_fd, "w") as out:
        json.dump(results, out)


def _start(paths: list[Path], route: str) -> tuple[int, int]:
    from django.db import connections

    connections.close_all()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            _child(paths, route, write_fd)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _run(batches: list[list[Path]], route: str, jobs: int) -> None:
    """Up to ``jobs`` children at a time; each child's own peak comes from ``wait4``."""
    pending = list(batches)
    running: dict[int, tuple[list[Path], int]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            batch = pending.pop(0)
            pid, read_fd = _start(batch, route)
            running[pid] = (batch, read_fd)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        batch, read_fd = running.pop(pid)
        with os.fdopen(read_fd) as pipe:
            text = pipe.read()
        results = json.loads(text) if text else [{"name": p.name, "status": "died"} for p in batch]
        for result in results:
            result["maxrss_mb"] = round(usage.ru_maxrss / 1024, 1)
            result["exit"] = os.waitstatus_to_exitcode(status)
            print(json.dumps(result, ensure_ascii=True), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--route", choices=("path", "upload"), default="path")
    parser.add_argument("--together", action="store_true")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    _setup(args.workdir)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": round(baseline, 1)}), flush=True)
    batches = [args.files] if args.together else [[path] for path in args.files]
    _run(batches, args.route, max(1, args.jobs))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"children_peak_mb": round(peak, 1)}), flush=True)


if __name__ == "__main__":
    main()
