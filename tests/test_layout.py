"""The house's rules, checked on the code itself: arrows run one way.

- The media library (mediaopt.library) is the bottom floor: importing any of its modules
  pulls in nothing of the metadata or billing apps.
- Only admin modules, views and the URL configuration know the admin; no domain module
  builds a request.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mediaopt", "metadata", "billing")
LIBRARY_MODULES = (
    "mediaopt.library.fields",
    "mediaopt.library.models",
    "mediaopt.library.deletion",
    "mediaopt.library.images",
    "mediaopt.library.embedded",
    "mediaopt.library.decoding",
    "mediaopt.library.filenames",
    "mediaopt.library.ingest",
    "mediaopt.library.search",
    "mediaopt.library.paging",
    "mediaopt.library.admin",
)

# Settings with only Django's own apps and the library installed: what the library needs
# to import, and nothing that could pull the apps above it in.
_LIBRARY_ALONE = """
import json, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
        "django.contrib.sessions", "django.contrib.messages", "mediaopt.library",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    MEDIAOPT_MAX_IMAGE_PIXELS=64_000_000, MEDIAOPT_MAX_FRAMES=1000, MEDIAOPT_PREVIEW_SIZE=512,
    MEDIAOPT_MAX_UPLOAD_BYTES=50 * 1024 * 1024,
)
django.setup()
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("metadata", "billing"))))
"""


def test_the_library_imports_nothing_of_the_apps_above_it():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", _LIBRARY_ALONE, *LIBRARY_MODULES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _modules() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    ]


def _knows_the_admin(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    return (
        relative.name in {"admin.py", "views.py", "urls.py"}
        or "admin" in relative.parts[:-1]  # a package of admin modules
    )


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_admin_modules_and_views_know_the_admin_or_build_requests(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    if _knows_the_admin(path):
        return
    admin = {name for name in _imports(tree) if name.startswith("django.contrib.admin")}
    assert not admin, f"{path.relative_to(ROOT)} imports {sorted(admin)}"
    builds = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "HttpRequest"
    ]
    assert not builds, f"{path.relative_to(ROOT)} builds an HttpRequest on lines {builds}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_about_five_hundred_lines(path):
    assert len(path.read_text().splitlines()) <= 550


INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)


def _markup_sources() -> list[Path]:
    """Templates, scripts, and the Python that writes HTML (format_html and friends)."""
    found = sorted((ROOT / "templates").rglob("*.html"))
    found += sorted((ROOT / "static").rglob("*.js"))
    return found + _modules()


def test_no_inline_style_anywhere_one_stylesheet_under_static():
    inline = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _markup_sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        # A script setting element.style is an inline style too.
        if INLINE_STYLE.search(line) or (path.suffix == ".js" and ".style." in line)
    ]
    assert inline == []
    assert [p.relative_to(ROOT) for p in (ROOT / "static").rglob("*.css")] == [
        Path("static/mediaopt/mediaopt.css")
    ]
