"""library.filenames: file names from outside, and what import_media writes to a terminal."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command

from mediaopt.library import filenames
from tests import factories

# What a terminal would act on: C0 (ESC, BEL...), DEL, C1 (CSI U+009B...), bidi controls.
# Not CR: the progress bar on stderr writes it itself (stdout is checked for it apart).
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)

HOSTILE_NAMES = (
    "\x1b[2Jclear.jpg",
    "report-\u202egpj.exe.jpg",
    "csi-\x9b31m-red.jpg",
    "bell\x07.jpg",
    "iso\u2067late\u2069.jpg",
    "carriage\rreturn.jpg",
)


def test_clean_name_keeps_the_last_component_and_never_returns_nothing():
    assert filenames.clean_name("holiday/2024/beach.jpg") == "beach.jpg"
    assert filenames.clean_name("") == "unnamed"
    assert filenames.clean_name("\u202e") == "unnamed"
    assert filenames.clean_name("..") == "unnamed"
    assert len(filenames.clean_name("a" * 400 + ".jpg")) == 255


def test_printable_escapes_every_control_and_bidi_character_visibly():
    assert filenames.printable("\x1b[2Jx") == "\\x1b[2Jx"
    assert filenames.printable("a\u202eb") == "a\\u202eb"
    assert filenames.printable("\x9b") == "\\x9b"
    assert filenames.printable("café 東京 می\u200cخواهم") == "café 東京 می\u200cخواهم"


def test_json_safe_output_still_parses_to_the_same_text():
    value = {"name": "a\u202eb\x9bc\x1bd"}
    text = filenames.json_safe(json.dumps(value, ensure_ascii=False))
    assert not RAW_CONTROL.search(text)
    assert json.loads(text) == value


@pytest.fixture
def hostile_folder(tmp_path):
    folder = tmp_path / "in\x1b]0;title\x07box"
    folder.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        (folder / name).write_bytes(factories.jpeg(8, 8, color=(40 * i, 0, 0)))
    (folder / "\x1b[31mbroken.jpg").write_bytes(factories.corrupt_bytes())
    (folder / "copy-\u202egpj.exe.jpg").write_bytes(factories.jpeg(8, 8, color=(0, 0, 0)))
    return folder


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_media", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_import_media_writes_no_raw_control_character_to_the_terminal(hostile_folder):
    out, err = run(str(hostile_folder), "--no-generate")
    assert not RAW_CONTROL.search(out + err), repr(out + err)
    assert "\r" not in out
    assert "6 imported, 1 duplicates, 1 rejected." in out
    assert "\\x1b[31mbroken.jpg" in out  # visible, escaped, in the path it names
    assert "\\x1b]0;title\\x07box" in out


@pytest.mark.django_db
def test_import_media_json_escapes_c1_and_bidi_and_names_are_stored_clean(hostile_folder):
    out, _err = run(str(hostile_folder), "--no-generate", "--json")
    assert not RAW_CONTROL.search(out), repr(out)
    report = json.loads(out)
    names = sorted(entry["name"] for entry in report["imported"])
    assert names == sorted(filenames.clean_name(name) for name in HOSTILE_NAMES)
    assert "report-gpj.exe.jpg" in names and "[2Jclear.jpg" in names
    assert all("\u202e" in entry["path"] for entry in report["duplicates"])
