"""Where metadata will come from now, in one sentence, and the one step that changes it.

The gate decides (``billing.gate.decide`` for bulk work over the library: the question a
person asks on the first page); this module only words its answer and names the fix,
for whoever may apply it ("Add credits") and for whoever may not ("Ask an administrator
to add credits").
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import reverse

from billing import estimate, gate, ledger
from billing.models import Account
from metadata.models import Settings

GRANT_PERMISSION = "billing.grant_credits"
PLAN_PERMISSION = "billing.change_account_plan"
KEY_PERMISSION = "billing.change_account"
SETTINGS_PERMISSION = "metadata.change_settings"
RUN_PERMISSION = "metadata.run_regeneration"
FALLBACK = "New images get metadata from embedded text and file names only."

# The server's key lives in the environment of the process: no page can set it.
SERVER_KEY_COMMAND = "OPENAI_API_KEY=sk-… (then restart mediaopt)"


@dataclass(frozen=True)
class NextStep:
    """The one thing to do next: a link (``url``), or a command to run (``command``)."""

    text: str
    url: str = ""
    command: str = ""


@dataclass(frozen=True)
class AIStatus:
    uses_ai: bool
    sentence: str
    step: NextStep | None = None
    mode: str = ""


def ai_status(
    *, account: Account | None = None, user: AbstractBaseUser | AnonymousUser | None = None
) -> AIStatus:
    """The status of ``account`` (the installation's by default), worded for ``user``.

    Without a user the step is worded for someone who cannot apply it.
    """
    account = account or Account.objects.current()
    decision = gate.decide(work=gate.WorkKind.BULK, account=account)
    mode = str(decision.mode)
    if decision.mode == gate.Mode.AI_BUNDLED:
        available = ledger.available(account)
        return AIStatus(
            uses_ai=True,
            sentence=f"AI with the server's key: {available:,} credits left.",
            mode=mode,
        )
    if decision.mode == gate.Mode.AI_BYOK:
        usage = estimate.month_usage(account)
        used = usage.used + usage.held
        if usage.cap is None:
            sentence = f"BYOK: your own key, {used:,} requests this month."
        else:
            sentence = f"BYOK: your own key, {used:,} of {usage.cap:,} requests this month."
        return AIStatus(uses_ai=True, sentence=sentence, mode=mode)
    sentence, step = _blocked(decision=decision, account=account, user=user)
    return AIStatus(uses_ai=False, sentence=sentence, step=step, mode=mode)


def upload_status(
    *, account: Account | None = None, user: AbstractBaseUser | AnonymousUser | None = None
) -> AIStatus:
    """What an upload by ``user`` will do now, said before they upload: AI and what it
    spends (one credit, or one request on the own key, per new image), or the heuristic,
    why, and the one step that changes it."""
    row = Settings.objects.current()
    if not row.generate_on_upload:
        sentence = "No metadata is written on upload: the settings turn it off."
        if _may(user, SETTINGS_PERMISSION):
            url = reverse("admin:metadata_settings_change", args=[row.pk])
            return AIStatus(
                uses_ai=False, sentence=sentence, step=NextStep(text="Change it", url=url)
            )
        return AIStatus(uses_ai=False, sentence=sentence)
    if not _may(user, RUN_PERMISSION):
        return AIStatus(
            uses_ai=False,
            sentence=f"No AI on your uploads: your account may not start regeneration jobs. "
            f"{FALLBACK}",
        )
    account = account or Account.objects.current()
    decision = gate.decide(work=gate.WorkKind.UPLOAD, account=account)
    mode = str(decision.mode)
    if decision.mode == gate.Mode.AI_BUNDLED:
        available = ledger.available(account)
        sentence = (
            f"AI on upload: each new image uses one credit ({available:,} left); "
            "duplicates cost nothing."
        )
        return AIStatus(uses_ai=True, sentence=sentence, mode=mode)
    if decision.mode == gate.Mode.AI_BYOK:
        sentence = "AI on upload with your own key: one request per new image."
        return AIStatus(uses_ai=True, sentence=sentence, mode=mode)
    sentence, step = _blocked(decision=decision, account=account, user=user)
    return AIStatus(uses_ai=False, sentence=f"{sentence} {FALLBACK}", step=step, mode=mode)


def _may(user: AbstractBaseUser | AnonymousUser | None, permission: str) -> bool:
    return user is not None and user.is_active and user.has_perm(permission)


def _account_url(account: Account, view: str = "change") -> str:
    return reverse(f"admin:billing_account_{view}", args=[account.pk])


def _blocked(
    *,
    decision: gate.Decision,
    account: Account,
    user: AbstractBaseUser | AnonymousUser | None,
) -> tuple[str, NextStep | None]:
    cause = decision.cause
    plan = account.get_plan_display()
    if cause == gate.Cause.NO_SERVER_KEY:
        sentence = "Heuristic only: no OpenAI key is configured."
        if user is not None and user.is_superuser:
            return sentence, NextStep(
                text="Set OPENAI_API_KEY in the server's environment and restart mediaopt:",
                command=SERVER_KEY_COMMAND,
            )
        return sentence, NextStep(
            text="Ask an administrator to set OPENAI_API_KEY on the server and restart it."
        )
    if cause in {gate.Cause.PLAN_NO_BULK, gate.Cause.PLAN_NO_UPLOAD_AI}:
        what = "AI bulk jobs" if cause == gate.Cause.PLAN_NO_BULK else "AI on upload"
        sentence = f"Heuristic only: the {plan} plan has no {what}."
        if _may(user, PLAN_PERMISSION):
            return sentence, NextStep(text="Choose a plan", url=_account_url(account))
        return sentence, NextStep(text="Ask an administrator to choose a plan with AI.")
    if cause == gate.Cause.OUT_OF_CREDITS:
        sentence = "Out of credits."
        if _may(user, GRANT_PERMISSION):
            return sentence, NextStep(text="Add credits", url=_account_url(account, "grant"))
        return sentence, NextStep(text="Ask an administrator to add credits.")
    if cause in {gate.Cause.NO_ACCOUNT_KEY, gate.Cause.KEY_UNREADABLE}:
        sentence = (
            "Heuristic only: no OpenAI key is set for this account."
            if cause == gate.Cause.NO_ACCOUNT_KEY
            else "No AI: the stored OpenAI key cannot be read."
        )
        if _may(user, KEY_PERMISSION):
            return sentence, NextStep(text="Set your own key", url=_account_url(account))
        return sentence, NextStep(text="Ask an administrator to set the account's OpenAI key.")
    if cause == gate.Cause.CAP_REACHED:
        sentence = "No AI: this month's cap of AI requests is reached."
        if _may(user, PLAN_PERMISSION):
            return sentence, NextStep(text="Raise the cap", url=_account_url(account))
        return sentence, NextStep(text="Ask an administrator to raise the monthly cap.")
    if cause == gate.Cause.JOB_TOO_LARGE:
        if _may(user, PLAN_PERMISSION):
            return decision.reason, NextStep(text="Choose a plan", url=_account_url(account))
        return decision.reason, NextStep(
            text="Select fewer images, or ask an administrator for the Agency plan."
        )
    if cause == gate.Cause.MODEL_NOT_IN_PLAN:
        if _may(user, SETTINGS_PERMISSION):
            row = Settings.objects.current()
            url = reverse("admin:metadata_settings_change", args=[row.pk])
            return decision.reason, NextStep(text="Choose another model", url=url)
        return decision.reason, NextStep(text="Ask an administrator to choose another model.")
    return decision.reason, None


def next_step(
    *,
    decision: gate.Decision,
    account: Account,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> NextStep | None:
    """The fix for a decision that is not AI (a refusal on the confirmation page), worded
    for ``user``; None when it uses AI or nothing can be done about it."""
    if decision.uses_ai:
        return None
    return _blocked(decision=decision, account=account, user=user)[1]
