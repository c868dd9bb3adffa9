"""The media library: an image file, its facts, and its current metadata.

The fields' values are written only by the metadata app (its revisions module); the
library stores them and knows nothing of how they were made.
"""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import Q
from django.utils.text import smart_split, unescape_string_literal

from mediaopt.library import deletion, search
from mediaopt.library.fields import (
    ALT_TEXT_MAX,
    CAPTION_MAX,
    DESCRIPTION_MAX,
    FIELDS,
    MAX_LENGTHS,
    TITLE_MAX,
    Source,
)


def asset_upload_to(instance: MediaAsset, filename: str) -> str:
    # Content-addressed: the name never collides and says nothing about the user's file.
    return f"assets/{instance.sha256[:2]}/{instance.sha256}.{instance.format.lower()}"


def thumbnail_upload_to(instance: MediaAsset, filename: str) -> str:
    return f"thumbs/{instance.sha256[:2]}/{instance.sha256}.jpg"


class MetadataFields(models.Model):
    """The five fields, their sources and the decorative flag.

    An asset holds the current values; each revision holds a full snapshot of them.
    """

    alt_text = models.CharField(max_length=ALT_TEXT_MAX, blank=True)
    title = models.CharField(max_length=TITLE_MAX, blank=True)
    caption = models.CharField(max_length=CAPTION_MAX, blank=True)
    description = models.TextField(max_length=DESCRIPTION_MAX, blank=True)
    keywords = models.CharField(
        max_length=MAX_LENGTHS["keywords"], blank=True, help_text="Comma-separated."
    )
    alt_text_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    title_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    caption_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    description_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    keywords_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    is_decorative = models.BooleanField(
        default=False, help_text="Decorative images have an intentionally empty alt text."
    )

    class Meta:
        abstract = True

    def values(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FIELDS}

    def sources(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_source") for name in FIELDS}


# What the library's search looks in: the admin's search_fields, and a stored "select
# all" scope replays the same (MediaAssetQuerySet.search).
SEARCH_FIELDS: tuple[str, ...] = ("original_name", "alt_text", "title", "caption", "keywords")


def _unquoted(word: str) -> str:
    if word.startswith(('"', "'")) and word[0] == word[-1]:
        return unescape_string_literal(word)
    return word


def search_words(text: str) -> tuple[list[str], list[str]]:
    """The words (or "quoted phrases") of a search as typed: those it looks for, and those
    it leaves out, under search.MIN_TERM characters once unquoted. A shorter term has no
    trigram for an index to find it by (FTS5 on SQLite, pg_trgm on PostgreSQL): it would
    be a scan of the whole library, so the search leaves it out (and the admin says so)."""
    kept: list[str] = []
    left_out: list[str] = []
    for word in smart_split(text):
        (kept if len(_unquoted(word)) >= search.MIN_TERM else left_out).append(word)
    return kept, left_out


# Alt text empty or only guessed by the heuristic, and not marked decorative. Also the
# condition of the partial index that serves the "missing alt text" list.
MISSING_ALT_TEXT = Q(Q(alt_text="") | Q(alt_text_source=Source.HEURISTIC), is_decorative=False)


class MediaAssetQuerySet(models.QuerySet):
    # A common search's FTS narrowing, kept for counting (for_count): the page walks the
    # list's order, the count reads the index.
    _count_narrowing = None

    def _clone(self) -> MediaAssetQuerySet:
        clone = super()._clone()
        clone._count_narrowing = self._count_narrowing
        return clone

    def for_count(self) -> MediaAssetQuerySet:
        """The same rows in the form a count reads least: after a common search, narrowed
        by the FTS table (a superset of the search's rows, so the count is unchanged)."""
        if self._count_narrowing is None:
            return self
        return self.filter(pk__in=self._count_narrowing)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Django's delete, with the images it removes announced once, as one batch
        (mediaopt.library.deletion): their ids are read and locked first, so the rows the
        delete then collects are those (and any image that matched since is announced by
        its own pre_delete)."""
        if self.query.is_sliced or self.query.distinct_fields or self._fields is not None:
            return super().delete()  # refused by Django, with its own message
        with transaction.atomic(using=self.db, savepoint=False):
            locked = self.model._base_manager.using(self.db).filter(
                pk__in=self.order_by().values("pk")
            )
            ids = list(locked.select_for_update().order_by().values_list("pk", flat=True))
            with deletion.announced(origin=self, asset_ids=ids, using=self.db, sender=self.model):
                return super().delete()

    def missing_alt_text(self) -> MediaAssetQuerySet:
        """Alt text empty or only guessed by the heuristic, and not marked decorative."""
        return self.filter(MISSING_ALT_TEXT)

    def with_alt_text(self) -> MediaAssetQuerySet:
        """The complement of missing_alt_text, the same condition negated (no column in it
        is nullable), so the two can never disagree about what "missing" means; a row
        test, not an id subquery, so the list walks its index at any library size."""
        return self.exclude(MISSING_ALT_TEXT)

    def search(self, text: str) -> MediaAssetQuerySet:
        """Every word (or "quoted phrase") of ``text`` of three characters or more
        (search_words) in one of SEARCH_FIELDS, ignoring case: the admin's own search
        rule (ModelAdmin.get_search_results) without the shorter words. On SQLite the
        FTS5 trigram table narrows the rows first (mediaopt.library.search)."""
        queryset = self
        terms = [_unquoted(word) for word in search_words(text)[0]]
        if not terms:
            return queryset
        for term in terms:
            any_field = Q()
            for name in SEARCH_FIELDS:
                any_field |= Q(**{f"{name}__icontains": term})
            queryset = queryset.filter(any_field)
        if search.indexed(queryset.db):
            ids, common = search.narrowing(terms, using=queryset.db)
            if ids is not None and not common:
                queryset = queryset.filter(pk__in=ids)
            elif ids is not None:
                queryset = queryset._chain()
                queryset._count_narrowing = ids
        return queryset


class MediaAsset(MetadataFields):
    file = models.FileField(upload_to=asset_upload_to, max_length=255)
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=255, blank=True)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True, editable=False)
    format = models.CharField(max_length=16, editable=False)
    width = models.PositiveIntegerField(editable=False)
    height = models.PositiveIntegerField(editable=False)
    bytes = models.PositiveBigIntegerField(editable=False)

    current_revision = models.ForeignKey(
        "metadata.MetadataRevision",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # Kept by metadata.revisions with every revision it makes current, for the library's
    # filters at a million images (a subquery per image was the alternative): the language
    # the latest AI values were asked in ("" where AI never wrote), and whether the image
    # changed since its import (its current revision is past number 1).
    # db_default: added with ALTER TABLE, where SQLite would copy the table (and lose the
    # search index's triggers) for a Python default.
    ai_language = models.CharField(max_length=35, blank=True, editable=False, db_default="")
    revised = models.BooleanField(editable=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MediaAssetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "image"
        verbose_name_plural = "images"
        # The list's order, and each filter's column before it, so a first page (and a
        # filtered one) reads 100 rows from an index instead of sorting the library.
        indexes = [
            models.Index(fields=["created_at", "id"], name="asset_created_order"),
            models.Index(
                fields=["alt_text_source", "created_at", "id"], name="asset_source_created"
            ),
            # Partial: Django writes is_decorative=True as the bare column, which SQLite
            # matches to an index only as a partial index's condition.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(is_decorative=True),
                name="asset_decorative_created",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=MISSING_ALT_TEXT,
                name="asset_missing_alt_created",
            ),
            # The lint's "same alt text as N other images" count, once per written image:
            # without it every image of a job read the whole library.
            models.Index(fields=["alt_text"], name="asset_alt_text"),
            models.Index(
                fields=["created_at", "id"], condition=Q(revised=True), name="asset_revised_created"
            ),
            models.Index(fields=["ai_language"], name="asset_ai_language"),
        ]

    def __str__(self) -> str:
        return self.original_name
