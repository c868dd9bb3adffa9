"""Accounts, their credits, and the append-only record of every change to them.

``balance`` and ``held`` (and a BYOK month's ``used``/``held``) are written only by
billing/ledger.py, through conditional UPDATEs in the same transaction as the entry or
hold row; the CHECK constraints are the last line if a writer ever gets that wrong.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from billing.plans import Plan, default_plan


class AccountMode(models.TextChoices):
    BUNDLED = "bundled", "Bundled (the server's key, paid with credits)"
    BYOK = "byok", "Own OpenAI key (no credits)"


class Unit(models.TextChoices):
    """What a hold or an entry counts: bundled credits, or BYOK requests (monthly cap)."""

    CREDIT = "credit", "Credits"
    REQUEST = "request", "Requests"


class AccountQuerySet(models.QuerySet):
    def current(self) -> Account:
        """The installation's account, created on first use."""
        account, _ = self.get_or_create(
            is_installation=True,
            defaults={"name": "Default", "plan": default_plan()},
        )
        return account


class Account(models.Model):
    name = models.CharField(max_length=100)
    # True for the one account Account.objects.current() returns (NULL for any other):
    # a unique condition instead of "pk=1", so two processes starting together create one,
    # and PostgreSQL's sequence is never bypassed.
    is_installation = models.BooleanField(null=True, blank=True, default=None, editable=False)
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.FREE)
    mode = models.CharField(max_length=16, choices=AccountMode.choices, default=AccountMode.BUNDLED)
    # A Fernet token (MultiFernet, the first of settings.FERNET_KEYS encrypts). Never the
    # key itself; written only by billing.crypto.set_api_key / rotate.
    encrypted_api_key = models.TextField(blank=True, default="", editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    api_key_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    api_key_set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    byok_monthly_cap_requests = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="BYOK only: most AI requests a calendar month (UTC). Empty: no cap.",
    )
    balance = models.BigIntegerField(default=0, editable=False)
    held = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        permissions = [
            ("grant_credits", "Can add credits to an account"),
            ("change_account_plan", "Can change an account's plan, mode and cap"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=models.F("held")),
                name="account_balance_covers_held",
            ),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="account_held_nonneg"),
            models.UniqueConstraint(
                fields=["is_installation"],
                condition=models.Q(is_installation=True),
                name="one_installation_account",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Explicit, so no future field (the key) ever slips into a traceback or a log.
        return f"<Account {self.pk} {self.name!r} {self.plan}/{self.mode}>"

    @property
    def available(self) -> int:
        return self.balance - self.held

    @property
    def has_api_key(self) -> bool:
        return bool(self.encrypted_api_key)

    @property
    def masked_api_key(self) -> str:
        return f"…{self.api_key_last4}" if self.encrypted_api_key else ""


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    CAPTURE = "capture", "Capture"
    REFUND = "refund", "Refund"


class LedgerEntry(models.Model):
    """One change of a balance. Append-only: never updated, never deleted.

    Credit entries sum to ``Account.balance``. Request entries (BYOK) record usage against
    the monthly cap; their ``balance_after`` is the month's used requests.
    Holds are not entries: they change ``held``, never the balance, and the hold row is
    their record.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.CREDIT)
    amount = models.BigIntegerField(help_text="Signed: grants and refunds add, captures take.")
    balance_after = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    hold = models.ForeignKey(
        "CreditHold", null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    refund_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="refund"
    )
    reason = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Plain integers, not foreign keys: the ledger outlives jobs and does not depend on
    # the metadata app's tables.
    job_id = models.BigIntegerField(null=True, blank=True)
    item_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "-id"], name="ledger_account_newest"),
            # A job's page sums its captures every second while it runs.
            models.Index(fields=["job_id", "kind"], name="ledger_job_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount:+d} {self.unit}"


class HoldState(models.TextChoices):
    HELD = "held", "Held"
    CAPTURED = "captured", "Captured"
    RELEASED = "released", "Released"


class CreditHold(models.Model):
    """Credits (or BYOK requests) set aside before a paid call; captured or released once."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.CREDIT)
    amount = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=HoldState.choices, default=HoldState.HELD)
    idempotency_key = models.CharField(max_length=200, unique=True)
    # BYOK: the month whose meter this hold counts against (first day, UTC).
    month = models.DateField(null=True, blank=True)
    expires_at = models.DateTimeField()
    job_id = models.BigIntegerField(null=True, blank=True)
    item_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "expires_at"], name="hold_expiry")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="hold_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Hold {self.pk} {self.amount} {self.unit} ({self.get_state_display()})"


class RequestMeter(models.Model):
    """A BYOK account's AI requests in one calendar month: used and in flight (held)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="meters")
    month = models.DateField()
    used = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="one_meter_per_month"),
            models.CheckConstraint(condition=models.Q(used__gte=0), name="meter_used_nonneg"),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="meter_held_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}: {self.used} used, {self.held} held"
