"""Secrets that must exist before Django starts: SECRET_KEY and the Fernet keys.

Taken from the environment when set; otherwise generated once into ``var/`` with mode 0600,
so a newcomer's first run works and a restart keeps sessions and encrypted values readable.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def _read_or_create(path: Path, make) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: two processes starting together must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def secret_key(var_dir: Path) -> str:
    return os.environ.get("SECRET_KEY") or _read_or_create(
        var_dir / "secret_key", lambda: secrets.token_urlsafe(50)
    )


def fernet_keys(var_dir: Path) -> list[str]:
    """Comma-separated ``FERNET_KEYS``; the first encrypts, all decrypt (MultiFernet)."""
    raw = os.environ.get("FERNET_KEYS") or _read_or_create(
        var_dir / "fernet_keys",
        lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    )
    return [key.strip() for key in raw.split(",") if key.strip()]
