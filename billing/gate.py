"""May this account use AI for this work, and how: one answer with a reason a person can read.

The table (``decide``), in order:

1. No account row yet and none given: the installation before billing was set up. AI with
   the server's key when one is configured, else the heuristic (the first version's rule).
2. The plan has no AI for this kind of work (uploads and imports: ``ai_on_upload``; bulk:
   ``ai_bulk_jobs``): HEURISTIC: no AI at all for that work.
3. Bulk work larger than the plan's ``largest_job`` (none on Agency), or a model the plan
   does not allow: REFUSED for single and bulk work, HEURISTIC for uploads and imports (a
   file is never refused its metadata for a billing reason).
4. Bundled: no server ``OPENAI_API_KEY``: HEURISTIC. No available credits: REFUSED
   ("out of credits") for single and bulk, HEURISTIC for uploads. Else AI_BUNDLED. A bulk
   job bigger than the credits still starts; it pauses when they run out.
5. BYOK: no key set: HEURISTIC. A key that cannot be decrypted, or a monthly cap reached:
   REFUSED for single and bulk, HEURISTIC for uploads, with a reason that says what to
   do. Else AI_BYOK with the account's key.

The decision carries the key for the provider call; it is never in its repr, and must
never be put into task arguments: a runner calls ``decide`` itself.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from django.conf import settings

from billing import crypto, plans
from billing.models import Account, AccountMode

logger = logging.getLogger(__name__)


class WorkKind(enum.StrEnum):
    UPLOAD = "upload"
    IMPORT = "import"
    SINGLE = "single"
    BULK = "bulk"


class Mode(enum.StrEnum):
    AI_BUNDLED = "ai_bundled"
    AI_BYOK = "ai_byok"
    HEURISTIC = "heuristic"
    REFUSED = "refused"


INGEST_WORK = frozenset({WorkKind.UPLOAD, WorkKind.IMPORT})

OUT_OF_CREDITS = "out of credits"


class Cause(enum.StrEnum):
    """Why a decision is not AI, for pages that link the reason to its fix."""

    NONE = ""
    NO_SERVER_KEY = "no_server_key"
    PLAN_NO_UPLOAD_AI = "plan_no_upload_ai"
    PLAN_NO_BULK = "plan_no_bulk"
    JOB_TOO_LARGE = "job_too_large"
    MODEL_NOT_IN_PLAN = "model_not_in_plan"
    OUT_OF_CREDITS = "out_of_credits"
    NO_ACCOUNT_KEY = "no_account_key"
    KEY_UNREADABLE = "key_unreadable"
    CAP_REACHED = "cap_reached"


@dataclass(frozen=True)
class Decision:
    mode: Mode
    reason: str
    # repr=False: a Decision in a log line or a traceback must not show the key.
    api_key: str = field(default="", repr=False)
    account_id: int | None = None
    cause: Cause = Cause.NONE

    @property
    def uses_ai(self) -> bool:
        return self.mode in {Mode.AI_BUNDLED, Mode.AI_BYOK}


def _server_key_decision() -> Decision:
    if settings.OPENAI_API_KEY:
        return Decision(
            mode=Mode.AI_BUNDLED,
            reason="AI with the server's OpenAI key.",
            api_key=settings.OPENAI_API_KEY,
        )
    return Decision(
        mode=Mode.HEURISTIC,
        reason=(
            "No OpenAI API key is configured: metadata comes from text embedded in the "
            "files and telling file names only."
        ),
        cause=Cause.NO_SERVER_KEY,
    )


def _no_ai(work: WorkKind, reason: str, account: Account, cause: Cause) -> Decision:
    """Uploads get the heuristic; work a person asked AI for is refused, with the reason."""
    if work in INGEST_WORK:
        return Decision(
            mode=Mode.HEURISTIC,
            reason=f"{reason} Metadata comes from embedded text and file names.",
            account_id=account.pk,
            cause=cause,
        )
    return Decision(mode=Mode.REFUSED, reason=reason, account_id=account.pk, cause=cause)


def decide(
    *,
    work: WorkKind,
    images: int = 1,
    account: Account | None = None,
    model: str | None = None,
) -> Decision:
    """The gate's answer for ``images`` images of ``work`` on ``account``.

    ``account=None`` means the installation's account, if one exists; the gate reads and
    never creates (``Account.objects.current()`` does that). ``model=None`` skips the
    plan's model check.
    """
    if account is None:
        account = Account.objects.filter(is_installation=True).first()
        if account is None:
            return _server_key_decision()
    features = plans.features(account.plan)
    plan_name = account.get_plan_display()

    if work in INGEST_WORK and not features.ai_on_upload:
        return Decision(
            mode=Mode.HEURISTIC,
            reason=f"The {plan_name} plan has no AI on upload: embedded text and file names only.",
            account_id=account.pk,
            cause=Cause.PLAN_NO_UPLOAD_AI,
        )
    if work == WorkKind.BULK and not features.ai_bulk_jobs:
        return Decision(
            mode=Mode.HEURISTIC,
            reason=(
                f"The {plan_name} plan has no AI bulk jobs: embedded text and file names "
                "only. Choose the Pro or Agency plan for AI over the library."
            ),
            account_id=account.pk,
            cause=Cause.PLAN_NO_BULK,
        )
    if work == WorkKind.BULK and not features.allows_job_of(images):
        return _no_ai(
            work,
            f"{images:,} images are more than the {plan_name} plan's largest job of "
            f"{features.largest_job:,}: select fewer, or choose the Agency plan (no limit "
            "per job).",
            account,
            Cause.JOB_TOO_LARGE,
        )
    if model is not None and not features.allows_model(model):
        allowed = ", ".join(sorted(features.models_allowed or ()))
        return _no_ai(
            work,
            f"The {plan_name} plan does not include the model {model}; choose one of: {allowed}.",
            account,
            Cause.MODEL_NOT_IN_PLAN,
        )

    if account.mode == AccountMode.BYOK:
        return _decide_byok(work=work, account=account)
    return _decide_bundled(work=work, images=images, account=account)


def _decide_bundled(*, work: WorkKind, images: int, account: Account) -> Decision:
    if not settings.OPENAI_API_KEY:
        return Decision(
            mode=Mode.HEURISTIC,
            reason=(
                "No OpenAI API key is configured on the server: metadata comes from text "
                "embedded in the files and telling file names only."
            ),
            account_id=account.pk,
            cause=Cause.NO_SERVER_KEY,
        )
    from billing import ledger  # ledger imports the models; keep the gate importable early

    available = ledger.available(account)
    if available <= 0:
        return _no_ai(
            work,
            f"{OUT_OF_CREDITS.capitalize()}: ask an administrator to add credits.",
            account,
            Cause.OUT_OF_CREDITS,
        )
    reason = f"AI with bundled credits ({available:,} available)."
    if images > available:
        reason += f" {images:,} images need more: the job pauses when credits run out."
    return Decision(
        mode=Mode.AI_BUNDLED,
        reason=reason,
        api_key=settings.OPENAI_API_KEY,
        account_id=account.pk,
    )


def _decide_byok(*, work: WorkKind, account: Account) -> Decision:
    if not account.encrypted_api_key:
        return Decision(
            mode=Mode.HEURISTIC,
            reason=(
                "No OpenAI key is set for this account: set one under Billing > Accounts. "
                "Until then, metadata comes from embedded text and file names."
            ),
            account_id=account.pk,
            cause=Cause.NO_ACCOUNT_KEY,
        )
    try:
        key = crypto.decrypted_key(account)
    except crypto.KeyUnreadable:
        # Usually FERNET_KEYS changed without a rotation. Never a 500: say what to do.
        logger.warning("account %s: the stored API key cannot be decrypted", account.pk)
        return _no_ai(
            work,
            "The stored OpenAI key cannot be read (the server's encryption keys changed): "
            "please set the key again.",
            account,
            Cause.KEY_UNREADABLE,
        )
    from billing import estimate

    usage = estimate.month_usage(account)
    if usage.remaining == 0:
        return _no_ai(
            work,
            f"The monthly cap of {usage.cap:,} AI requests is reached for "
            f"{usage.month:%B %Y}: raise the cap or wait for next month.",
            account,
            Cause.CAP_REACHED,
        )
    return Decision(
        mode=Mode.AI_BYOK,
        reason=f"AI with this account's own OpenAI key (…{account.api_key_last4}).",
        api_key=key or "",
        account_id=account.pk,
    )
