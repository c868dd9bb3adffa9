"""Real ``qcluster`` processes on PostgreSQL, talking to the session's fake OpenAI server.

Run them in their own pytest invocation against PostgreSQL, so pytest-django's test
database (``test_mediaopt``) is a real server the subprocesses can share::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt \\
        .venv/bin/pytest -q -p no:randomly tests/services

On SQLite (the main run) every test here skips, or fails under MEDIAOPT_REQUIRE_SERVICES=1.
Subprocesses get the test database's name, the test's MEDIA_ROOT, the fake server's URL
and key, and short leases, through their environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import skip_or_fail
from tests.processes import JOB_ENV, Cluster, cluster_env, database_url


@pytest.fixture
def services_db(django_db_blocker) -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "tests/services need PostgreSQL: run them with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt"
        )


@pytest.fixture
def job_env(monkeypatch, settings) -> dict[str, str]:
    """The short job tuning for the clusters (through their environment) and for this
    process's recover() (through settings, which read the environment only at import)."""
    for name, value in JOB_ENV.items():
        monkeypatch.setenv(name, value)
        setattr(settings, name, float(value))
    return dict(JOB_ENV)


@pytest.fixture
def start_cluster(
    services_db, job_env, fake_openai_settings, tmp_path
) -> Iterator[Callable[..., Cluster]]:
    """Start clusters sharing the test database, media and fake server; stop them all."""
    clusters: list[Cluster] = []
    db = connection.settings_dict

    def start(*, cluster_name: str | None = None, **extra: str) -> Cluster:
        env = cluster_env(
            database=database_url(db),
            media_root=settings.MEDIA_ROOT,
            openai_base_url=fake_openai_settings.base_url,
            cluster_name=cluster_name,
            **{**job_env, **extra},
        )
        cluster = Cluster(env, tmp_path / f"cluster-{len(clusters)}.log")
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()
