"""Accounts, the read-only ledger and holds, and "Add credits" (its own permission).

What an account may spend (its plan, its mode, its BYOK monthly cap) is changed only with
a permission of its own: without it those fields are read-only, and a forged POST cannot
change them because they are not in the form at all.

The admin never writes credits or keys itself: ledger.py and crypto.py do. An account's
change form saves only the fields the form changed (``update_fields``), because the
instance was read at the start of the request and a job may have moved ``balance`` or
``held`` since.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html

from billing import crypto, ledger
from billing.models import Account, CreditHold, LedgerEntry, RequestMeter
from mediaopt.library.admin import ReadOnlyAdminMixin, SuperuserOnlyMixin, admin_route

GRANT_PERMISSION = "billing.grant_credits"
PLAN_PERMISSION = "billing.change_account_plan"
PLAN_FIELDS = ("plan", "mode", "byok_monthly_cap_requests")


class AccountForm(forms.ModelForm):
    # Write-only: rendered empty whatever is stored, so the key never reaches a page.
    api_key = forms.CharField(
        label="OpenAI API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="For the 'own key' mode. Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = Account
        fields = ["name", "plan", "mode", "byok_monthly_cap_requests"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.has_api_key:
            self.fields["api_key"].help_text = (
                f"Current key: {self.instance.masked_api_key}. Type a new key to replace it; "
                "leave empty to keep it."
            )

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key") or ""
        if not value:
            return ""
        try:
            return crypto.validate_key(value)
        except crypto.ApiKeyError as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    list_display = ("name", "plan", "mode", "balance", "available_display", "key_display")
    list_filter = ("plan", "mode")
    fieldsets = (
        (None, {"fields": ("name", "plan", "mode")}),
        (
            "Own OpenAI key (BYOK)",
            {
                "fields": (
                    "key_display",
                    "api_key",
                    "clear_api_key",
                    "key_set_display",
                    "byok_monthly_cap_requests",
                )
            },
        ),
        ("Credits", {"fields": ("balance", "held", "available_display")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "key_display",
        "key_set_display",
        "balance",
        "held",
        "available_display",
        "created_at",
        "updated_at",
    )

    @admin.display(description="available")
    def available_display(self, account: Account) -> int:
        return account.available

    @admin.display(description="key")
    def key_display(self, account: Account) -> str:
        return account.masked_api_key or "—"

    @admin.display(description="key set")
    def key_set_display(self, account: Account) -> str:
        if not account.api_key_set_at:
            return "—"
        who = account.api_key_set_by.get_username() if account.api_key_set_by else "a command"
        return f"{account.api_key_set_at:%Y-%m-%d %H:%M} by {who}"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An account's entries are the record of money: never deleted from a page.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if request.user.has_perm(PLAN_PERMISSION):
            return readonly
        return (*readonly, *PLAN_FIELDS)

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        if change:
            changed = [name for name in form.changed_data if name in AccountForm.Meta.fields]
            if changed:
                obj.save(update_fields=[*changed, "updated_at"])
        else:
            obj.save()
        if form.cleaned_data.get("clear_api_key"):
            crypto.clear_api_key(account=obj, actor=request.user)
        elif form.cleaned_data.get("api_key"):
            crypto.set_api_key(account=obj, key=form.cleaned_data["api_key"], actor=request.user)

    # -- "Add credits" --------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            admin_route(self, "<path:object_id>/grant/", self.grant_view, "grant"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_grant_credits": request.user.has_perm(GRANT_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def grant_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(GRANT_PERMISSION):
            raise PermissionDenied
        account = get_object_or_404(Account, pk=object_id)
        form = GrantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                entry = ledger.grant(
                    account=account,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except ledger.LedgerError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    f"Added {entry.amount:,} credits to {account}: "
                    f"balance {entry.balance_after:,}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:billing_account_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": account,
            "title": f"Add credits to {account}",
            "form": form,
            "has_view_permission": self.has_view_permission(request, account),
        }
        return TemplateResponse(request, "admin/billing/account/grant.html", context)


class GrantForm(forms.Form):
    reason = forms.CharField(
        max_length=ledger.MAX_REASON,
        # Spaces only count as empty (strip=True); say what is missing, in the ledger's words.
        error_messages={
            "required": "A reason is required: say why these credits are added, "
            "e.g. an invoice number."
        },
        help_text="Why: an invoice number, a goodwill gesture… Shown in the ledger.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    field_order = ["amount", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built here so a MEDIAOPT_MAX_GRANT override in settings applies.
        self.fields["amount"] = forms.IntegerField(
            min_value=1,
            max_value=ledger.max_grant(),
            help_text="Credits: one pays for one image described by AI.",
        )
        self.order_fields(self.field_order)


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only: written by ledger.py alone. Who made each write is in ``actor``."""

    list_display = (
        "created_at",
        "account",
        "kind",
        "amount_display",
        "balance_after",
        "reason",
        "actor_display",
        "job_id",
        "item_id",
    )
    list_filter = ("kind", "unit", "account", "created_at")
    date_hierarchy = "created_at"
    list_select_related = ("account", "actor")
    search_fields = ("reason", "idempotency_key")
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, entry: LedgerEntry) -> str:
        unit = "credits" if entry.unit == "credit" else "requests"
        return format_html("{} {}", f"{entry.amount:+,d}", unit)

    @admin.display(description="by")
    def actor_display(self, entry: LedgerEntry) -> str:
        if entry.actor:
            return entry.actor.get_username()
        return "job" if entry.item_id is not None else "command"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("account", "actor")


# Holds and meters are the ledger's workings (the account's page shows balance and held):
# for superusers only, like the task queue's tables.
@admin.register(CreditHold)
class CreditHoldAdmin(SuperuserOnlyMixin, ReadOnlyAdmin):
    list_display = ("created_at", "account", "unit", "amount", "state", "expires_at", "item_id")
    list_filter = ("state", "unit", "account")
    search_fields = ("idempotency_key",)
    show_full_result_count = False


@admin.register(RequestMeter)
class RequestMeterAdmin(SuperuserOnlyMixin, ReadOnlyAdmin):
    list_display = ("account", "month", "used", "held")
    list_filter = ("account",)
