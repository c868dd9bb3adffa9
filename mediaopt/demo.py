"""Demo content for a first run: an admin login and a few generated photos.

Nothing is downloaded: the images are drawn here, some with text embedded the way cameras
and photo tools write it, some with telling file names, one with neither.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from PIL import Image, ImageDraw

DEMO_USERNAME = "admin"


@dataclass(frozen=True)
class DemoImage:
    name: str
    sky: tuple[int, int, int]
    ground: tuple[int, int, int]
    sun: tuple[int, int, int] | None
    description: str = ""


DEMO_IMAGES = (
    DemoImage("sunset-over-a-calm-sea.jpg", (250, 140, 60), (30, 70, 140), (255, 220, 90)),
    DemoImage("green-hills-under-a-blue-sky.jpg", (110, 170, 235), (60, 150, 60), None),
    DemoImage(
        "IMG_2041.jpg",
        (20, 24, 60),
        (40, 40, 40),
        (240, 240, 220),
        description="Full moon rising over the old harbour wall",
    ),
    DemoImage("DSC00012.jpg", (200, 200, 205), (120, 110, 100), None),
)


def draw(image: DemoImage, size: tuple[int, int] = (960, 640)) -> bytes:
    width, height = size
    picture = Image.new("RGB", size, image.sky)
    pen = ImageDraw.Draw(picture)
    horizon = int(height * 0.62)
    for y in range(horizon):  # a soft vertical gradient in the sky
        shade = tuple(max(0, c - (horizon - y) // 12) for c in image.sky)
        pen.line([(0, y), (width, y)], fill=shade)
    pen.rectangle([0, horizon, width, height], fill=image.ground)
    if image.sun:
        radius = height // 9
        cx, cy = int(width * 0.68), horizon - radius
        pen.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=image.sun)
    exif = Image.Exif()
    if image.description:
        exif[0x010E] = image.description  # ImageDescription
    exif[0x010F] = "DemoCam"  # Make: a camera name the heuristic must never use
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


def ensure_admin() -> tuple[str, str | None]:
    """Create the demo superuser once. Returns (username, password if just created)."""
    users = get_user_model()
    if users.objects.filter(username=DEMO_USERNAME).exists():
        return DEMO_USERNAME, None
    password = secrets.token_urlsafe(9)
    users.objects.create_superuser(DEMO_USERNAME, "admin@example.invalid", password)
    path = Path(settings.VAR_DIR) / "demo-admin.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{DEMO_USERNAME} {password}\n")
    path.chmod(0o600)
    return DEMO_USERNAME, password


def saved_password() -> str | None:
    path = Path(settings.VAR_DIR) / "demo-admin.txt"
    try:
        return path.read_text().split()[1]
    except (FileNotFoundError, IndexError):
        return None
