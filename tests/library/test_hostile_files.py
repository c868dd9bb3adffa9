"""Hostile files: each is imported in a child process whose peak memory is measured.

The corpus (tests/hostile_corpus.py) is generated once per session. tests/hostile_probe.py
sets Django up once, then forks one child per file, as a worker with Django loaded would
import it: the import itself (hash, one decode for size, thumbnail and embedded text,
storage), then the preview and the thumbnail a job renders from the stored file. The
child's peak RSS comes from the kernel (``wait4``; the probe's last line is
``getrusage(RUSAGE_CHILDREN)`` over all of them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hostile_corpus
from tests.hostile_corpus import CORPUS

pytestmark = pytest.mark.timeout(300)

PROBE = Path(__file__).resolve().parents[1] / "hostile_probe.py"
HOSTILE_BOUND_MB = 300
ORDINARY_BOUND_MB = 150
WORKER_BOUND_MB = 400
# The heaviest files still accepted, for the runs that repeat a few of them.
HEAVY = ("i16-7999.png", "progressive-7999.jpg", "rle8-7999.bmp", "p-trns-7999.png")


def probe(files: list[Path], workdir: Path, *extra: str) -> tuple[dict[str, dict], float]:
    done = subprocess.run(
        [sys.executable, str(PROBE), "--workdir", str(workdir), *extra, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    results = {line["name"]: line for line in lines if "name" in line}
    assert len(results) == len(files), done.stdout
    peak = next(line["children_peak_mb"] for line in lines if "children_peak_mb" in line)
    return results, peak


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return hostile_corpus.write_corpus(tmp_path_factory.mktemp("hostile-corpus"))


@pytest.fixture(scope="module")
def imported_one_by_one(corpus, tmp_path_factory) -> tuple[dict[str, dict], float]:
    return probe(list(corpus.values()), tmp_path_factory.mktemp("probe-path"), "--jobs", "2")


def test_the_corpus_has_at_least_forty_distinct_files(corpus):
    assert len(corpus) >= 40
    digests = {path.read_bytes() for path in corpus.values()}
    assert len(digests) == len(corpus)


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_each_file_is_imported_or_refused_with_its_reason_within_the_bound(
    entry, imported_one_by_one
):
    results, _peak = imported_one_by_one
    result = results[entry.name]
    assert result["exit"] == 0, result
    assert result["status"] == entry.outcome, result
    if entry.outcome == "rejected":
        assert entry.reason.casefold() in result["reason"].casefold(), result
        assert result["reason"], result
    else:
        assert "render_error" not in result, result
    bound = ORDINARY_BOUND_MB if entry.ordinary else HOSTILE_BOUND_MB
    assert result["maxrss_mb"] < bound, result


def test_no_child_of_the_whole_run_went_past_the_bound(imported_one_by_one):
    _results, peak = imported_one_by_one
    assert 0 < peak < HOSTILE_BOUND_MB


def test_heavy_files_uploaded_through_django_upload_objects_stay_within_the_bound(corpus, tmp_path):
    names = ("rle8-7999.bmp", "p-trns-7999.png", "exif-30mb.webp", "icc-15mb.jpg")
    files = [corpus[name] for name in names]
    results, peak = probe(files, tmp_path, "--route", "upload")
    assert {result["status"] for result in results.values()} == {"imported"}, results
    assert peak < HOSTILE_BOUND_MB, results


def test_several_heavy_uploads_at_once_in_one_process_stay_within_a_worker_bound(corpus, tmp_path):
    files = [corpus[name] for name in (*HEAVY, "photo-50mp.jpg", "rgba-7999.png")]
    results, peak = probe(files, tmp_path, "--route", "upload", "--together")
    statuses = {name: result["status"] for name, result in results.items()}
    assert statuses == {
        **{name: "imported" for name in (*HEAVY, "photo-50mp.jpg")},
        "rgba-7999.png": "rejected",
    }
    assert peak < WORKER_BOUND_MB, results
