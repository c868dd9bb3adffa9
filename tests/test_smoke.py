import pytest
from django.core.management import call_command

from metadata.models import Settings


@pytest.mark.django_db
def test_settings_row_takes_defaults_from_environment(monkeypatch):
    monkeypatch.setenv("MEDIAOPT_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("MEDIAOPT_GENERATE_ON_UPLOAD", "0")
    row = Settings.objects.current()
    assert row.model == "gpt-4.1-mini"
    assert row.generate_on_upload is False
    assert Settings.objects.current().pk == row.pk


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
