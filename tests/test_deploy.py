import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def production_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FERNET_KEYS"}}
    env["DJANGO_SETTINGS_MODULE"] = "mediaopt.production"
    env.update(extra)
    return env


@pytest.mark.timeout(60)
def test_check_deploy_reports_nothing_with_production_settings():
    env = production_env(
        SECRET_KEY=secrets.token_urlsafe(60),
        FERNET_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.timeout(60)
def test_production_settings_refuse_to_start_without_secrets():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_generated_keys_are_private(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("FERNET_KEYS", raising=False)
    from mediaopt import keys

    first = keys.secret_key(tmp_path)
    assert keys.secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert len(keys.fernet_keys(tmp_path)) == 1
    assert (tmp_path / "fernet_keys").stat().st_mode & 0o777 == 0o600
