"""Cost of checking metadata: the language detector's start-up and memory, and the time to
clean and lint one image's five values.

Not part of the test suite::

    .venv/bin/python bench/quality.py --images 2000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANSWERS = [
    (
        {
            "alt_text": "This image shows a golden retriever running along a beach at sunset",
            "title": "Golden retriever at sunset",
            "caption": "A dog on the beach at Porthcurno, Cornwall.",
            "description": "A golden retriever runs through shallow water. " * 3,
            "keywords": "dog, golden retriever, beach, #sunset, stock photo, Cornwall",
            "is_decorative": "false",
        },
        "en",
    ),
    (
        {
            "alt_text": "Dieses Bild zeigt zwei Kinder, die im Schnee vor einem roten Haus spielen",
            "title": "Kinder im Schnee",
            "caption": "Winter in Tirol.",
            "description": "Zwei Kinder bauen einen Schneemann vor einem roten Holzhaus.",
            "keywords": "Kinder, Schnee, Tirol, Winter",
            "is_decorative": False,
        },
        "de",
    ),
    (
        {
            "alt_text": "夕焼けの空にそびえ立つ東京タワーと高層ビル群",
            "title": "東京タワー",
            "caption": "夕暮れの東京。",
            "description": "東京タワーが夕焼けの空にそびえ立ち、周囲には高層ビルが立ち並ぶ。",
            "keywords": "東京、タワー、夕焼け",
            "is_decorative": False,
        },
        "ja",
    ),
]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()

    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mediaopt.settings")
    import django

    django.setup()
    from metadata import language, quality, schema

    before = rss_mb()
    started = time.perf_counter()
    language.detect("Ein Hund läuft am Strand entlang")
    first_german = time.perf_counter() - started
    started = time.perf_counter()
    for text in ("A dog runs along the beach", "Un chien court sur la plage", "浜辺を走る犬"):
        language.detect(text)
    others = time.perf_counter() - started
    print(
        f"detector ({len(language.DETECTABLE)} languages): first detection {first_german:.2f} s, "
        f"three more languages {others:.2f} s, peak memory +{rss_mb() - before:.0f} MB"
    )

    started = time.perf_counter()
    errors = 0
    for i in range(args.images):
        output, lang = ANSWERS[i % len(ANSWERS)]
        language.detect.cache_clear()  # every image's text is new in a real library
        cleaned = schema.clean(output, language=lang)
        findings = quality.lint(
            cleaned.values, language=lang, is_decorative=False, overflow=cleaned.overflow
        )
        errors += len(findings.errors)
    elapsed = time.perf_counter() - started
    print(
        f"clean + lint: {args.images} images in {elapsed:.2f} s, "
        f"{elapsed * 1000 / args.images:.2f} ms per image ({errors} error findings)"
    )


if __name__ == "__main__":
    main()
