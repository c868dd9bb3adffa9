"""File names from outside: cleaned of invisible controls at ingest, escaped for terminals.

A name is text the user will see in the admin, in reports and on a terminal. Control
characters (C0, DEL, C1: ``ESC[2J`` clears a screen) and the bidirectional overrides,
embeddings, isolates and marks (U+202E turns ``photo-gpj.exe`` into what reads as
``photo-exe.jpg``) have no business in one. Everything else stays: accents, CJK, Arabic
and Hebrew letters, and ZWJ/ZWNJ, which are parts of words (Persian, emoji sequences).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

UNNAMED = "unnamed"
MAX_LENGTH = 255

_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Line and paragraph separators break a name over lines as a newline would.
_SEPARATORS = "\u2028\u2029"
_WHITESPACE_CONTROLS = "\t\n\v\f\r\x85"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI_CONTROLS + _SEPARATORS + "]")
# What json.dumps(ensure_ascii=False) leaves raw inside strings (it escapes C0 itself;
# outside strings there is only its own indentation, which must stay as it is).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f" + _BIDI_CONTROLS + _SEPARATORS + "]")


def clean_name(name: str) -> str:
    """The last path component of ``name``, without controls or bidi overrides.

    Whitespace controls (tab, newline...) become a space, so words stay apart; the rest
    is dropped. Never empty, at most 255 characters.
    """
    base = PurePosixPath(name).name
    spaced = "".join(" " if char in _WHITESPACE_CONTROLS else char for char in base)
    cleaned = _UNSAFE.sub("", spaced).strip()[:MAX_LENGTH]
    return cleaned if cleaned not in ("", ".", "..") else UNNAMED


def printable(text: str) -> str:
    """``text`` safe to write to a terminal: each control or bidi character escaped."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def json_safe(text: str) -> str:
    """JSON text (already escaping C0) with C1 and bidi characters escaped as well."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
