"""The one Settings row: the defaults a new job starts from and the provider limits,
seeded from the environment when the row is first created."""

from __future__ import annotations

import os
from functools import partial

from django.core.validators import MinValueValidator
from django.db import models

from mediaopt.library.fields import FIELDS


class Strategy(models.TextChoices):
    FILL_EMPTY = "fill_empty", "Fill empty fields only"
    OVERWRITE = "overwrite", "Overwrite (keep fields edited by hand)"
    PER_FIELD = "per_field", "Choose per field"


class Detail(models.TextChoices):
    LOW = "low", "Low (cheaper)"
    HIGH = "high", "High"
    AUTO = "auto", "Auto"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def default_fields() -> list[str]:
    raw = os.environ.get("MEDIAOPT_DEFAULT_FIELDS")
    if not raw:
        return list(FIELDS)
    return [name for name in (part.strip() for part in raw.split(",")) if name in FIELDS]


class SettingsManager(models.Manager):
    def current(self) -> Settings:
        """The installation's one Settings row, created from the environment on first use."""
        settings_row, _ = self.get_or_create(pk=1)
        return settings_row


class Settings(models.Model):
    """The installation's generation settings: one row, edited on the admin's settings page.

    Field defaults come from environment variables, read when the row is first created.
    """

    generate_on_upload = models.BooleanField(
        default=partial(_env_bool, "MEDIAOPT_GENERATE_ON_UPLOAD", True),
        help_text="Write metadata for new uploads and imports at once.",
    )
    heuristic_fallback = models.BooleanField(
        default=partial(_env_bool, "MEDIAOPT_HEURISTIC_FALLBACK", True),
        help_text=(
            "When AI fails for an upload, fill what embedded text and file names tell. "
            "Bulk jobs never fall back."
        ),
    )
    default_fields = models.JSONField(
        default=default_fields, help_text="Fields written unless a run chooses others."
    )
    default_strategy = models.CharField(
        max_length=16,
        choices=Strategy.choices,
        default=partial(_env, "MEDIAOPT_DEFAULT_STRATEGY", Strategy.FILL_EMPTY),
    )
    language = models.CharField(
        max_length=35,
        default=partial(_env, "MEDIAOPT_LANGUAGE", "en"),
        help_text="Language of the generated text, e.g. en, de, pt-BR.",
    )
    review_by_default = models.BooleanField(
        "review results before they are written",
        default=partial(_env_bool, "MEDIAOPT_REVIEW_BY_DEFAULT", False),
        help_text=(
            "Bulk jobs keep each result for review instead of writing it (the confirmation "
            "page can change this per job)."
        ),
    )
    site_context = models.TextField(
        blank=True,
        max_length=500,
        default=partial(_env, "MEDIAOPT_SITE_CONTEXT", ""),
        help_text="A sentence about the site, given to the model, e.g. 'a bakery in Lyon'.",
    )
    model = models.CharField(max_length=100, default=partial(_env, "MEDIAOPT_MODEL", "gpt-4o-mini"))
    detail = models.CharField(
        max_length=8,
        choices=Detail.choices,
        default=partial(_env, "MEDIAOPT_DETAIL", Detail.LOW),
    )
    requests_per_minute = models.PositiveIntegerField(
        default=partial(_env_int, "MEDIAOPT_REQUESTS_PER_MINUTE", 500)
    )
    tokens_per_minute = models.PositiveIntegerField(
        default=partial(_env_int, "MEDIAOPT_TOKENS_PER_MINUTE", 200_000)
    )
    revisions_keep = models.PositiveIntegerField(
        "revisions kept per image",
        default=partial(_env_int, "MEDIAOPT_REVISIONS_KEEP", 50),
        validators=[MinValueValidator(1)],
        help_text="Each image keeps at least its latest revisions, however old.",
    )
    revisions_keep_days = models.PositiveIntegerField(
        "keep revisions for (days)",
        default=partial(_env_int, "MEDIAOPT_REVISIONS_KEEP_DAYS", 90),
        validators=[MinValueValidator(1)],
        help_text=(
            "Every revision younger than this is kept, and jobs finished within it can be "
            "undone. Older ones beyond the count above are pruned daily."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = SettingsManager()

    class Meta:
        verbose_name = "settings"
        verbose_name_plural = "settings"

    def __str__(self) -> str:
        return "Settings"
