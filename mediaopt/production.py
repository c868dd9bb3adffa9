"""Production settings: everything of settings.py, secrets required, HTTPS enforced.

Use with ``DJANGO_SETTINGS_MODULE=mediaopt.production``.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from mediaopt.settings import *  # noqa: F403

for _name in ("SECRET_KEY", "FERNET_KEYS"):
    if not os.environ.get(_name):
        raise ImproperlyConfigured(f"{_name} must be set in the environment in production.")

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)  # noqa: F405
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)  # noqa: F405
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
