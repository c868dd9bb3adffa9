"""Local cost per image of a bulk job: 50 twelve-megapixel JPEGs, a provider with no latency.

What the runner itself spends per image (open and decode, preview, gate, limiter, hold,
revision, capture: every database write) on the embedded default (SQLite), measured as
the job's wall time minus the time spent inside the HTTP call to the fake server. The
images are generated once into a temporary folder and reused. Not part of the test
suite::

    .venv/bin/python bench/local.py            # target: 20 ms or less per image
    .venv/bin/python bench/local.py --previews-only

It also times previews of 12 MP JPEGs and 20 MP PNGs, images per second, next to Pillow's
own floor measured in the same run on the same files (open, JPEG draft, load, thumbnail,
save: the least any preview can cost), and the peak RSS of each run.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(tempfile.gettempdir()) / "mediaopt-bench-12mp"
WIDTH, HEIGHT = 4000, 3000
PNG_WIDTH, PNG_HEIGHT = 5477, 3651  # 20 MP


def twelve_megapixel_jpegs(count: int) -> list[Path]:
    """Photo-like 12 MP JPEGs (gradients and noise, so they compress like photos)."""
    from PIL import Image, ImageFilter

    CACHE.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = CACHE / f"photo_{i:03}.jpg"
        if not path.exists():
            small = Image.effect_noise((WIDTH // 16, HEIGHT // 16), 60 + i).convert("RGB")
            tint = Image.new("RGB", small.size, ((37 * i) % 255, (91 * i) % 255, (53 * i) % 255))
            small = Image.blend(small, tint, 0.5).filter(ImageFilter.GaussianBlur(1))
            image = small.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def twenty_megapixel_pngs(count: int) -> list[Path]:
    """Photo-like 20 MP PNGs, saved with fast compression as cameras' tools tend to."""
    from PIL import Image, ImageFilter

    CACHE.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = CACHE / f"photo_{i:03}.png"
        if not path.exists():
            small = Image.effect_noise((PNG_WIDTH // 16, PNG_HEIGHT // 16), 60 + i).convert("RGB")
            small = small.filter(ImageFilter.GaussianBlur(1))
            image = small.resize((PNG_WIDTH, PNG_HEIGHT), Image.Resampling.BICUBIC)
            image.save(path, "PNG", compress_level=1)
        paths.append(path)
    return paths


def pillow_floor(path, side: int = 512) -> bytes:
    """The least a preview can cost with Pillow: nothing but decode, shrink, encode."""
    from PIL import Image

    with Image.open(path) as img:
        # The same DCT scale mediaopt picks: at least 90% of the preview's long side.
        share = 0.9 * side / max(img.size)
        img.draft("RGB", (int(img.width * share), int(img.height * share)))
        img.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def previews_per_second(paths: list[Path], renders: dict, rounds: int = 3) -> dict[str, float]:
    """Images per second for each render, best of ``rounds`` passes. The renders take
    turns on each file, so a busy moment of the shared machine slows them alike."""
    best = dict.fromkeys(renders, float("inf"))
    for _ in range(rounds):
        spent = dict.fromkeys(renders, 0.0)
        for path in paths:
            for name, render in renders.items():
                started = time.perf_counter()
                with path.open("rb") as handle:
                    render(handle)
                spent[name] += time.perf_counter() - started
        best = {name: min(best[name], spent[name]) for name in renders}
    return {name: len(paths) / seconds for name, seconds in best.items()}


def compare_previews(jpegs: list[Path], pngs: list[Path]) -> None:
    import resource

    from mediaopt.library import images

    print("previews (512 px), images/second, best of 3 passes:")
    print(f"  {'':18} {'mediaopt':>10} {'Pillow floor':>13} {'ratio':>7}")
    for label, paths in (("12 MP JPEG", jpegs), ("20 MP PNG", pngs)):
        rates = previews_per_second(paths, {"ours": images.preview, "floor": pillow_floor})
        ours, floor = rates["ours"], rates["floor"]
        print(f"  {label:18} {ours:10.1f} {floor:13.1f} {ours / floor:7.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process: {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--pngs", type=int, default=10)
    parser.add_argument("--previews-only", action="store_true")
    args = parser.parse_args()
    paths = twelve_megapixel_jpegs(args.images)
    pngs = twenty_megapixel_pngs(args.pngs)
    size = sum(path.stat().st_size for path in paths) / len(paths) / 1e6
    print(f"{len(paths)} JPEGs of {WIDTH}x{HEIGHT}, {size:.1f} MB each, in {CACHE}")
    with tempfile.TemporaryDirectory(prefix="mediaopt-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.pop("REDIS_URL", None)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
                "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
                "MEDIAOPT_VAR_DIR": str(workdir),
                "MEDIA_ROOT": str(workdir / "media"),
                "MEDIAOPT_GENERATE_ON_UPLOAD": "0",
                "MEDIAOPT_SYNC_TASKS": "1",
                "LOG_LEVEL": "WARNING",
            }
        )
        run(paths, pngs, previews_only=args.previews_only)


def run(paths: list[Path], pngs: list[Path], *, previews_only: bool) -> None:
    import django

    django.setup()
    compare_previews(paths, pngs)
    if previews_only:
        return
    from django.conf import settings
    from django.core.management import call_command

    from mediaopt.library import images
    from metadata import generation, intake, jobs, progress, runner
    from metadata.models import JobKind, JobState, Settings
    from metadata.providers import openai as _sdk  # noqa: F401  (a worker imports it once)
    from tests.billing.helpers import funded_account
    from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    ids = [intake.import_file(source=path, original_name=path.name).asset.pk for path in paths]
    imported = time.perf_counter() - started

    started = time.perf_counter()
    for path in paths:
        with path.open("rb") as handle:
            images.preview(handle)
    preview = time.perf_counter() - started

    row = Settings.objects.current()
    row.requests_per_minute = 0  # no limit: this measures local work
    row.tokens_per_minute = 0
    row.save()
    funded_account(credits=len(ids) * 2, plan="agency")
    http = [0.0]
    real_send = generation.send_ai_call

    def timed_send(**kwargs):
        begun = time.perf_counter()
        try:
            return real_send(**kwargs)
        finally:
            http[0] += time.perf_counter() - begun

    generation.send_ai_call = timed_send
    with FakeOpenAI(api_key=FAKE_API_KEY) as fake:
        settings.OPENAI_API_KEY = FAKE_API_KEY
        settings.OPENAI_BASE_URL = fake.base_url
        settings.MEDIAOPT_JOB_CONCURRENCY = 1  # one call at a time: local cost, not overlap
        job = jobs.create_job(kind=JobKind.BULK, asset_ids=ids).job
        started = time.perf_counter()
        runner.run_inline(job)
        total = time.perf_counter() - started
    job.refresh_from_db()
    counts = progress.progress(job)
    assert job.state == JobState.COMPLETED and counts.succeeded == len(ids), counts

    n = len(ids)
    print(f"import (hash, probe, embedded text, revision 1): {imported * 1000 / n:.1f} ms/image")
    print(f"preview alone (decode in draft mode, 512 px, JPEG): {preview * 1000 / n:.1f} ms/image")
    print(f"bulk job, wall time:                   {total * 1000 / n:.1f} ms/image")
    print(f"  of which the HTTP call to the fake:  {http[0] * 1000 / n:.1f} ms/image")
    print(f"  local (everything else):             {(total - http[0]) * 1000 / n:.1f} ms/image")


if __name__ == "__main__":
    main()
