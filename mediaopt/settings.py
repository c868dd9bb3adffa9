"""Settings for mediaopt, driven by environment variables with embedded defaults.

The default needs no services: SQLite in ``var/`` (WAL, immediate transactions) and the
django-q2 ORM broker. ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` scale it out.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from mediaopt import keys

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MEDIAOPT_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = keys.secret_key(VAR_DIR)
FERNET_KEYS = keys.fernet_keys(VAR_DIR)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip()
    for origin in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "mediaopt.apps.ProjectConfig",
    "mediaopt.library.apps.LibraryConfig",
    "metadata.apps.MetadataConfig",
    "billing.apps.BillingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mediaopt.urls"
WSGI_APPLICATION = "mediaopt.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

SQLITE_OPTIONS = {
    # Without these a cluster beside web writes hits "database is locked" (measured: 24 to
    # 83 in 300 transactions with the defaults, none with these).
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "mediaopt.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            # A file, not memory: tests that start processes or a browser share it.
            "TEST": {"NAME": VAR_DIR / f"test-{os.getpid()}.sqlite3"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise warns on every request of a process started before collectstatic ran.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "admin:login"

# Uploads: the admin's multi-file upload posts many files at once.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
MEDIAOPT_MAX_UPLOAD_BYTES = env_int("MEDIAOPT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)

REDIS_URL = os.environ.get("REDIS_URL", "")
SYNC_TASKS = env_bool("MEDIAOPT_SYNC_TASKS", False)

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # Shared between processes, so qinfo and django-q2's stats work with the ORM broker.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "mediaopt_cache",
        }
    }

# Two clusters share one signing salt ("name") and the broker, each on its own queue:
# "bulk" (the default) and "interactive" (uploads, single clicks), so a click never waits
# behind a big job. Start the second with Q_CLUSTER_NAME=interactive (django_q/conf.py
# then applies ALT_CLUSTERS["interactive"]). Schedules must name cluster "bulk": with
# cluster_name != name, django-q2 runs no schedule whose cluster is empty.
# Retry at least twice the timeout, an in-memory queue no longer than the
# workers, failures acknowledged (a job runner is re-enqueued by recovery.recover(), never by
# django-q2's redelivery), and every task idempotent.
_Q_TIMEOUT = env_int("MEDIAOPT_Q_TIMEOUT", 300)
Q_CLUSTER: dict = {
    "name": "mediaopt",
    "cluster_name": "bulk",
    "workers": env_int("MEDIAOPT_WORKERS", 2),
    "timeout": _Q_TIMEOUT,
    "retry": max(env_int("MEDIAOPT_Q_RETRY", 660), 2 * _Q_TIMEOUT),
    "queue_limit": env_int("MEDIAOPT_WORKERS", 2),
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "sync": SYNC_TASKS,
    "save_limit": 1000,
    "ALT_CLUSTERS": {
        "interactive": {
            "workers": env_int("MEDIAOPT_INTERACTIVE_WORKERS", 2),
            "queue_limit": env_int("MEDIAOPT_INTERACTIVE_WORKERS", 2),
            # A single image is quick; a runner still hands over well before this.
            "timeout": _Q_TIMEOUT,
            "retry": max(env_int("MEDIAOPT_Q_RETRY", 660), 2 * _Q_TIMEOUT),
        },
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The vision provider. OPENAI_API_KEY is the server's (bundled) key; without one the
# heuristic provider is used. OPENAI_BASE_URL reaches any OpenAI-compatible server.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_TIMEOUT = float(os.environ.get("OPENAI_TIMEOUT", "60"))
# Our one retry policy (the SDK's own retries are off): a job item gets this many attempts
# in all, and after a retryable failure waits (its not_before) an exponential backoff from
# MEDIAOPT_RETRY_BASE_SECONDS, or the server's Retry-After, capped at 60 s.
MEDIAOPT_JOB_MAX_ATTEMPTS = env_int("MEDIAOPT_JOB_MAX_ATTEMPTS", 3)
MEDIAOPT_RETRY_BASE_SECONDS = float(os.environ.get("MEDIAOPT_RETRY_BASE_SECONDS", "1.0"))
# The job runner (metadata/runner.py). A claimed item's lease: short, since the live
# runner's heartbeat renews it (and its credit hold) every second, so a call slower than
# this keeps its item while a dead host's items come back within this long.
MEDIAOPT_JOB_LEASE_SECONDS = float(os.environ.get("MEDIAOPT_JOB_LEASE_SECONDS", "30"))
# Items a runner claims at once (never more than it has room for calls in flight).
MEDIAOPT_JOB_BATCH_SIZE = env_int("MEDIAOPT_JOB_BATCH_SIZE", 4)
# A runner hands over (re-enqueues itself) after this long, well inside the Q timeout.
MEDIAOPT_JOB_RUN_SECONDS = float(os.environ.get("MEDIAOPT_JOB_RUN_SECONDS", "60"))
# The longest a runner sleeps waiting for a backed-off item (it re-reads its job between).
MEDIAOPT_JOB_MAX_SLEEP_SECONDS = float(os.environ.get("MEDIAOPT_JOB_MAX_SLEEP_SECONDS", "5"))
# A runner heartbeat (written every second) older than this: the runner is dead, and
# recover() sends a new one.
MEDIAOPT_JOB_RUNNER_STALE_SECONDS = float(os.environ.get("MEDIAOPT_JOB_RUNNER_STALE_SECONDS", "10"))
# Items a job's creation adds per transaction (jobs.add_items): each chunk of asset ids
# is one short INSERT ... SELECT, so no transaction holds SQLite's write lock for long.
MEDIAOPT_JOB_CREATE_CHUNK = env_int("MEDIAOPT_JOB_CREATE_CHUNK", 20_000)
# A confirmed bulk job with more images than this gets its items from a background task
# (the confirmation page shows "Preparing N of M"); smaller ones are made in the request.
MEDIAOPT_JOB_PREPARE_IN_TASK_ABOVE = env_int("MEDIAOPT_JOB_PREPARE_IN_TASK_ABOVE", 50_000)
# The most provider calls a runner keeps in flight (threads make only the HTTP call): a
# cap. Within it the runner keeps as many as the rate limits and the latency it observes
# call for (metadata/pacing.py: Little's law, cut on 429s), so nobody needs to tune it.
MEDIAOPT_JOB_CONCURRENCY = env_int("MEDIAOPT_JOB_CONCURRENCY", 64)
# Runners working one job at once, on one host or several (metadata/runner_slots.py): two
# on PostgreSQL; one on SQLite, whose one writer a second runner would only wait for.
MEDIAOPT_JOB_RUNNERS = env_int(
    "MEDIAOPT_JOB_RUNNERS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 2
)

# How long a provider call may wait for room under the shared rate limit (ratelimit.py).
MEDIAOPT_RATE_LIMIT_WAIT_SECONDS = float(os.environ.get("MEDIAOPT_RATE_LIMIT_WAIT_SECONDS", "120"))
# Without Redis, the limiter's database backend splits each budget into this many stripes
# (rows locked separately, shares adding up to the limit) so admissions do not all wait for
# one row on PostgreSQL; SQLite always uses one (its write lock serialises anyway).
MEDIAOPT_RATE_LIMIT_STRIPES = env_int("MEDIAOPT_RATE_LIMIT_STRIPES", 4)

# Credits (billing/). The plan of the installation's account when it is first created, and
# the largest single grant. MEDIAOPT_PRICES (model -> dollars per image, for BYOK
# estimates) is a dict: set it in a settings module of your own.
MEDIAOPT_DEFAULT_PLAN = os.environ.get("MEDIAOPT_DEFAULT_PLAN", "agency")
MEDIAOPT_MAX_GRANT = env_int("MEDIAOPT_MAX_GRANT", 1_000_000)

# Pillow limits (images.py).
MEDIAOPT_MAX_IMAGE_PIXELS = env_int("MEDIAOPT_MAX_IMAGE_PIXELS", 64_000_000)
MEDIAOPT_MAX_FRAMES = env_int("MEDIAOPT_MAX_FRAMES", 1000)
MEDIAOPT_PREVIEW_SIZE = env_int("MEDIAOPT_PREVIEW_SIZE", 512)
# Memory, not pixels: what one image may hold once decoded, in its colour mode (a 7999x7999
# palette PNG is 64 MB, the same canvas in RGBA 256 MB), and what all images decoding at
# once in one process may hold (images beyond it wait their turn).
MEDIAOPT_MAX_DECODE_BYTES = env_int("MEDIAOPT_MAX_DECODE_BYTES", 192 * 1024 * 1024)
MEDIAOPT_DECODE_BYTES_IN_FLIGHT = env_int("MEDIAOPT_DECODE_BYTES_IN_FLIGHT", 192 * 1024 * 1024)
# EXIF larger than this is ignored (orientation and text included); PNG text, XMP and ICC
# chunks together may inflate to at most MEDIAOPT_MAX_TEXT_BYTES, or the file is refused.
MEDIAOPT_MAX_EXIF_BYTES = env_int("MEDIAOPT_MAX_EXIF_BYTES", 1024 * 1024)
MEDIAOPT_MAX_TEXT_BYTES = env_int("MEDIAOPT_MAX_TEXT_BYTES", 4 * 1024 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # The SDK logs request options at DEBUG; keep it quiet unless asked.
        "openai": {"level": os.environ.get("OPENAI_LOG_LEVEL", "WARNING")},
        "httpx2": {"level": "WARNING"},
    },
}

# Job notifications go out through Django's mail; the console backend until an operator
# configures a real one.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "mediaopt@localhost")
# A job that finished sooner than this was watched: nobody is told about it.
MEDIAOPT_NOTIFY_AFTER_SECONDS = env_int("MEDIAOPT_NOTIFY_AFTER_SECONDS", 60)
