"""``manage.py qcluster`` for tests that start real clusters, with an optional poison image.

With ``MEDIAOPT_TEST_POISON`` set, ``images.preview`` kills its own process with SIGKILL
(a real death, like the kernel's OOM killer would deal) when the image's bytes contain that
marker. Workers are forked from this process, so they inherit the patch; the application's
code is untouched.
"""

from __future__ import annotations

import os
import signal
import sys


def _poison(marker: bytes) -> None:
    from mediaopt.library import images

    real_preview = images.preview

    def preview(source, **kwargs):
        if hasattr(source, "read"):
            data = source.read()
            source.seek(0)
            if marker in data:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_preview(source, **kwargs)

    images.preview = preview


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mediaopt.settings")
    import django

    django.setup()
    marker = os.environ.get("MEDIAOPT_TEST_POISON")
    if marker:
        _poison(marker.encode())
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], "qcluster"])


if __name__ == "__main__":
    main()
