"""The media library's admin: the list with thumbnails and filters, the image's page with
its file facts, and the multi-file upload.

``LibraryAdmin`` is a base, not registered here: the metadata app composes it with its
features (the change form's revisions, Regenerate and its panel, history, the bulk
action) into the admin that is registered (metadata.admin.media), so this module needs
nothing from the apps above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.utils import ErrorList
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timezone import localtime

from mediaopt.library import images
from mediaopt.library.fields import FIELDS, source_field
from mediaopt.library.models import SEARCH_FIELDS, MediaAsset, search_words
from mediaopt.library.paging import CappedPaginator
from mediaopt.library.search import MIN_TERM


def admin_route(model_admin: admin.ModelAdmin, route: str, view: Any, name: str) -> URLPattern:
    """A view of ``model_admin`` at ``route`` (under its changelist), behind the admin's
    login and named "<app>_<model>_<name>" like the admin's own URLs."""
    opts = model_admin.opts
    return path(
        route,
        model_admin.admin_site.admin_view(view),
        name=f"{opts.app_label}_{opts.model_name}_{name}",
    )


class ReadOnlyAdminMixin:
    """A log or a record written by its own module: nobody adds, changes or deletes rows
    from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SuperuserOnlyMixin:
    """Internals (the task queue's tables, the ledger's holds and meters): superusers see
    them; nobody else gets them in the sidebar or by URL, whatever their permissions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)


def page_context(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    obj: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """What every page a model admin adds needs from the admin: the site's context, the
    model's options, the title; and the current app set for the URLs the page reverses."""
    request.current_app = model_admin.admin_site.name
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "title": title,
        "has_view_permission": model_admin.has_view_permission(request, obj),
        **extra,
    }


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Many files in one input (Django docs, "Uploading multiple files").

    Each file is only collected here: ingest.import_file judges it and says why it
    refuses one, so a single bad file does not reject the whole batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = [item for item in (data if isinstance(data, (list, tuple)) else [data]) if item]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


class UploadForm(forms.Form):
    files = MultipleFileField(label="Images")


class MissingAltTextFilter(admin.SimpleListFilter):
    title = "alt text"
    parameter_name = "alt_text_missing"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        return (("yes", "Missing alt text"), ("no", "Has alt text or is decorative"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "yes":
            return queryset.missing_alt_text()
        if self.value() == "no":
            return queryset.with_alt_text()
        return queryset


def _clipped(text: str, *, limit: int) -> str | None:
    """The text cut to ``limit`` characters, the whole of it on hover (a quoted attribute:
    the text may come from a model)."""
    if not text:
        return None
    return format_html(
        '<span class="mediaopt-clip" title="{}">{}</span>', text, Truncator(text).chars(limit)
    )


class LibraryAdmin(admin.ModelAdmin):
    change_list_template = "admin/mediaopt/mediaasset/change_list.html"
    upload_template = "admin/mediaopt/mediaasset/upload.html"

    # Seven columns (and Regenerate) fit beside the sidebar and the filters at 1366 px with
    # the alt text given room: the size rides under the name; "decorative" is said in the
    # alt text's cell (and filtered on), not in a column of its own.
    list_display = (
        "thumbnail_display",
        "name_display",
        "alt_text_display",
        "title_display",
        "alt_text_source",
        "created_display",
    )
    list_display_links = ("thumbnail_display", "name_display")
    list_filter = (MissingAltTextFilter, "alt_text_source", "is_decorative")
    search_fields = SEARCH_FIELDS
    search_help_text = (
        f"Finds every word of {MIN_TERM} characters or more in the name, alt text, title, "
        'caption or keywords; "quotes" keep a phrase together.'
    )
    # A COUNT(*) over a large library on every page view costs more than it tells: no
    # total beside a filtered count, and the count itself stops at 10,000.
    show_full_result_count = False
    paginator = CappedPaginator
    readonly_fields = (
        "preview_display",
        "original_name",
        "format",
        "dimensions_display",
        "bytes_display",
        "sha256_display",
        "created_at",
        *(source_field(name) for name in FIELDS),
    )
    fieldsets = (
        (None, {"fields": ("preview_display",)}),
        (
            "Metadata",
            {
                # Each field with its source beside it, so a person sees which values
                # were generated, embedded, guessed or typed by hand.
                "fields": (*((name, source_field(name)) for name in FIELDS), "is_decorative")
            },
        ),
        (
            "File",
            {
                "fields": (
                    "original_name",
                    ("format", "dimensions_display", "bytes_display"),
                    "sha256_display",
                    "created_at",
                )
            },
        ),
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # The library's own search rule, which a stored "select all" scope replays.
        return queryset.search(search_term), False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "GET":
            self.say_left_out_words(request)
        return super().changelist_view(request, extra_context)

    def say_left_out_words(self, request: HttpRequest) -> None:
        """Words too short to search for (no index finds them: each would read the whole
        library) are left out of the search: the list says which, and what it shows."""
        kept, left_out = search_words(request.GET.get(SEARCH_VAR, ""))
        if not left_out:
            return
        words = format_html_join(", ", "“{}”", ((word,) for word in left_out))
        shown = format_html("the images matching “{}”", " ".join(kept)) if kept else "every image"
        self.message_user(
            request,
            format_html(
                "Search words need at least {} characters: {} left out, showing {}.",
                MIN_TERM,
                words,
                shown,
            ),
            messages.WARNING,
        )

    def view_url(self, view: str, *args: Any) -> str:
        """The URL of one of this admin's views ("changelist", "change", "upload"...)."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(f"{self.admin_site.name}:{name}", args=args)

    def view_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    # --- list ---------------------------------------------------------------------------

    @admin.display(description="image")
    def thumbnail_display(self, asset: MediaAsset) -> str:
        image = asset.thumbnail or asset.file
        if not image:
            return "—"
        # Alt text may come from a model: format_html escapes it into a quoted attribute.
        # The thumbnail is the row's link: without alt text, the file name names it.
        return format_html(
            '<img src="{}" alt="{}" loading="lazy" class="mediaopt-thumb">',
            image.url,
            asset.alt_text or asset.original_name,
        )

    @admin.display(description="alt text", ordering="alt_text")
    def alt_text_display(self, asset: MediaAsset) -> str | None:
        if asset.is_decorative:
            if not asset.alt_text:
                return "(decorative)"
            return format_html("(decorative) {}", _clipped(asset.alt_text, limit=160))
        return _clipped(asset.alt_text, limit=160)

    @admin.display(description="title", ordering="title")
    def title_display(self, asset: MediaAsset) -> str | None:
        return _clipped(asset.title, limit=60)

    @admin.display(description="created", ordering="created_at")
    def created_display(self, asset: MediaAsset) -> str:
        # The date alone fits the column at 1366 px; the time is on hover.
        moment = localtime(asset.created_at)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            date_format(moment, "DATETIME_FORMAT"),
            date_format(moment, "SHORT_DATE_FORMAT"),
        )

    @admin.display(description="original name", ordering="original_name")
    def name_display(self, asset: MediaAsset) -> str:
        return format_html(
            '{}<span class="mediaopt-size">{}×{}, {}</span>',
            asset.original_name,
            asset.width,
            asset.height,
            filesizeformat(asset.bytes),
        )

    # --- change form --------------------------------------------------------------------

    @admin.display(description="preview")
    def preview_display(self, asset: MediaAsset) -> str:
        if not asset.pk or not asset.file:
            return "—"
        return format_html(
            '<img src="{}" alt="{}" class="mediaopt-preview">', asset.file.url, asset.alt_text
        )

    @admin.display(description="dimensions")
    def dimensions_display(self, asset: MediaAsset) -> str:
        return f"{asset.width} × {asset.height} px"

    @admin.display(description="size")
    def bytes_display(self, asset: MediaAsset) -> str:
        if asset.bytes < 1024:
            return filesizeformat(asset.bytes)
        return f"{filesizeformat(asset.bytes)} ({asset.bytes:,} bytes)"

    @admin.display(description="SHA-256")
    def sha256_display(self, asset: MediaAsset) -> str:
        return asset.sha256

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        # Images are added only by uploading files, never from a blank form.
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- upload -------------------------------------------------------------------------

    def upload_urls(self) -> list[URLPattern]:
        return [admin_route(self, "upload/", self.upload_view, "upload")]

    def get_urls(self) -> list[URLPattern]:
        # Before super()'s: its "<path:object_id>/" would swallow "upload/".
        return [*self.upload_urls(), *super().get_urls()]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # Assets come only from files: the admin's "Add" leads to the upload page.
        return HttpResponseRedirect(self.view_url("upload"))

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = UploadForm(request.POST, request.FILES)
            if form.is_valid():
                self.import_uploads(request, form.cleaned_data["files"])
                return HttpResponseRedirect(self.view_url("changelist"))
        else:
            form = UploadForm()
        context = page_context(
            self,
            request,
            title="Upload images",
            form=form,
            errors=form.errors.get("files", ErrorList()),
            max_upload_bytes=settings.MEDIAOPT_MAX_UPLOAD_BYTES,
            formats=", ".join(images.ALLOWED_FORMATS),
        )
        return TemplateResponse(request, self.upload_template, context)

    def import_uploads(self, request: HttpRequest, files: list) -> None:
        """Bring the files in and tell the person how it went; the metadata app's admin
        does this with each image's first revision and a job for their metadata."""
        raise NotImplementedError
