"""The only writer of credits: grant, hold, capture, release, refund.

Every write is one ``transaction.atomic()`` that changes the account (or a BYOK month's
meter) with a conditional UPDATE and writes its own record (an entry or a hold row).
Not ``durable=True``: a job's finish wraps ``capture`` in the same transaction as the
revision, so an image is charged exactly when its new metadata is written.

Why conditional UPDATEs and not read-check-write: under 32 threads on PostgreSQL, read-
check-write overspent, while a conditional UPDATE or a CHECK constraint charged exactly.
``UPDATE ... SET held = held + n WHERE id = ? AND balance - held >= n`` is decided by the
database on the row's latest version (PostgreSQL re-checks the WHERE after waiting for a
concurrent writer; SQLite runs one writer at a time), so no two holds can spend the same
credit, and ``select_for_update`` (a no-op on SQLite) is not needed. The CHECK constraints
on Account and RequestMeter are the last line.

Idempotency keys are unique in the database: a replay (a task delivered twice, a runner
restarted) returns what the first call wrote and changes nothing. Keys belong to the job
item, never the asset: ``hold_key(item_id=, attempt=)`` and ``capture_key(item_id=)``.

Units: a bundled account holds and spends credits (``Account.balance``/``held``); a BYOK
account holds and spends requests against the month's ``RequestMeter`` (its optional
monthly cap is the limit). Same functions, same hold rows; the hold remembers its unit,
so a mode switch never confuses a hold already made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.utils import timezone

from billing.models import (
    Account,
    AccountMode,
    CreditHold,
    EntryKind,
    HoldState,
    LedgerEntry,
    RequestMeter,
    Unit,
)
from mediaopt.library import sql

logger = logging.getLogger(__name__)

# A grant above this is a typo (an extra zero or two), not a purchase.
DEFAULT_MAX_GRANT = 1_000_000
MAX_REASON = 500
MAX_KEY = 200


class LedgerError(Exception):
    """A ledger call that cannot be done as asked. Nothing was written."""


class InsufficientCredits(LedgerError):
    """Not enough available credits (bundled) for this hold."""


class MonthlyCapReached(InsufficientCredits):
    """A BYOK account's monthly request cap has no room for this hold.

    A subclass of InsufficientCredits: a job pauses for either the same way.
    """


class UnknownHold(LedgerError):
    pass


class HoldNotHeld(LedgerError):
    """The hold was already released (expired, failed call) or captured under another key."""


def hold_key(*, item_id: int, attempt: int) -> str:
    return f"hold:{item_id}:{attempt}"


def capture_key(*, item_id: int) -> str:
    return f"capture:{item_id}"


def max_grant() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_GRANT", DEFAULT_MAX_GRANT))


def month_start(moment: dt.datetime | None = None) -> dt.date:
    moment = moment or timezone.now()
    return moment.astimezone(dt.UTC).date().replace(day=1)


# -- validation ----------------------------------------------------------------------------


def _positive_amount(amount: object, *, limit: int | None = None, what: str = "amount") -> int:
    # bool is an int in Python; True credits is never what anyone meant.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError(f"The {what} must be a whole number, not {type(amount).__name__}.")
    if amount <= 0:
        raise LedgerError(f"The {what} must be positive (got {amount}).")
    if limit is not None and amount > limit:
        raise LedgerError(f"The {what} {amount:,} is above the maximum of {limit:,}.")
    return amount


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise LedgerError("A reason is required.")
    if len(reason) > MAX_REASON:
        raise LedgerError(f"The reason is longer than {MAX_REASON} characters.")
    return reason


def _key(key: str | None, *, what: str = "idempotency key") -> str:
    key = (key or "").strip()
    if not key:
        raise LedgerError(f"An {what} is required.")
    if len(key) > MAX_KEY:
        raise LedgerError(f"The {what} is longer than {MAX_KEY} characters.")
    return key


def _now() -> dt.datetime:
    return timezone.now()


def _read_balance(account_id: int) -> int:
    return Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()


# -- grant ---------------------------------------------------------------------------------


def grant(
    *,
    account: Account,
    amount: int,
    reason: str,
    actor=None,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Add credits: the operator's act, with a reason. Replaying a key changes nothing."""
    amount = _positive_amount(amount, limit=max_grant())
    reason = _reason(reason)
    key = _key(idempotency_key) if idempotency_key is not None else f"grant:{uuid.uuid4().hex}"
    existing = LedgerEntry.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return _same_entry(existing, account=account, kind=EntryKind.GRANT, amount=amount)
    try:
        with transaction.atomic():
            if not Account.objects.filter(pk=account.pk).update(
                balance=F("balance") + amount, updated_at=_now()
            ):
                raise LedgerError(f"Account {account.pk} does not exist.")
            entry = LedgerEntry.objects.create(
                account_id=account.pk,
                kind=EntryKind.GRANT,
                unit=Unit.CREDIT,
                amount=amount,
                balance_after=_read_balance(account.pk),
                idempotency_key=key,
                reason=reason,
                actor=actor,
            )
    except IntegrityError:
        # The same key committed by a concurrent call: ours was rolled back entirely.
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _same_entry(existing, account=account, kind=EntryKind.GRANT, amount=amount)
    logger.info("granted %s credits to account %s (entry %s)", amount, account.pk, entry.pk)
    return entry


def _same_entry(entry: LedgerEntry, *, account: Account, kind: str, amount: int) -> LedgerEntry:
    if entry.account_id != account.pk or entry.kind != kind or abs(entry.amount) != amount:
        raise LedgerError(
            f"The idempotency key {entry.idempotency_key!r} was already used for another "
            f"{entry.kind} of {entry.amount:+d} on account {entry.account_id}."
        )
    return entry


# -- hold ----------------------------------------------------------------------------------


def hold(
    *,
    account: Account,
    amount: int,
    idempotency_key: str,
    expires_at: dt.datetime,
    job_id: int | None = None,
    item_id: int | None = None,
) -> CreditHold:
    """Set ``amount`` aside before a paid call; no hold, no call.

    Bundled: credits (raises InsufficientCredits). BYOK: requests against this month's cap
    (raises MonthlyCapReached). Replaying the key returns the first hold, whatever its state.
    ``account.mode`` picks the path tried first; the row's own mode decides.
    """
    amount = _positive_amount(amount, limit=max_grant())
    key = _key(idempotency_key)
    paths = [_hold_credits, _hold_requests]
    if account.mode == AccountMode.BYOK:
        paths.reverse()
    try:
        for path in paths:
            with contextlib.suppress(_OtherMode), transaction.atomic():
                return path(
                    account_id=account.pk,
                    amount=amount,
                    key=key,
                    expires_at=expires_at,
                    job_id=job_id,
                    item_id=item_id,
                )
        raise LedgerError(f"Account {account.pk} changed its mode during the hold: try again.")
    except IntegrityError:
        existing = CreditHold.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _same_hold(existing, account=account, amount=amount)


class _OtherMode(Exception):
    """The row's mode is not this path's (switched since ``account`` was read): the
    path's writes are rolled back and the other path is taken."""


def _hold_credits(
    *,
    account_id: int,
    amount: int,
    key: str,
    expires_at: dt.datetime,
    job_id: int | None,
    item_id: int | None,
) -> CreditHold:
    # The row first: a duplicate key (a replay) fails here, before the account row is
    # locked. Then one conditional UPDATE: two statements for a hold that succeeds.
    created = CreditHold.objects.create(
        account_id=account_id,
        unit=Unit.CREDIT,
        amount=amount,
        idempotency_key=key,
        expires_at=expires_at,
        job_id=job_id,
        item_id=item_id,
    )
    accounts = Account.objects.filter(pk=account_id)
    matched = accounts.filter(mode=AccountMode.BUNDLED, balance__gte=F("held") + amount).update(
        held=F("held") + amount, updated_at=_now()
    )
    if not matched:
        row = accounts.annotate(free=F("balance") - F("held")).values("mode", "free").first()
        if row is None:
            raise LedgerError(f"Account {account_id} does not exist.")
        if row["mode"] != AccountMode.BUNDLED:
            raise _OtherMode
        raise InsufficientCredits(
            f"Out of credits: {amount} needed, {max(row['free'], 0)} available."
        )
    return created


def _hold_requests(
    *,
    account_id: int,
    amount: int,
    key: str,
    expires_at: dt.datetime,
    job_id: int | None,
    item_id: int | None,
) -> CreditHold:
    row = Account.objects.filter(pk=account_id).values("mode", "byok_monthly_cap_requests")
    row = row.first()
    if row is None:
        raise LedgerError(f"Account {account_id} does not exist.")
    if row["mode"] != AccountMode.BYOK:
        raise _OtherMode
    cap = row["byok_monthly_cap_requests"]
    month = month_start(_now())
    meter, _ = RequestMeter.objects.get_or_create(account_id=account_id, month=month)
    created = CreditHold.objects.create(
        account_id=account_id,
        unit=Unit.REQUEST,
        amount=amount,
        idempotency_key=key,
        month=month,
        expires_at=expires_at,
        job_id=job_id,
        item_id=item_id,
    )
    meters = RequestMeter.objects.filter(pk=meter.pk)
    if cap is not None:
        # used + held + amount <= cap, decided on the row's latest version.
        meters = meters.filter(used__lte=Value(cap - amount) - F("held"))
    if not meters.update(held=F("held") + amount):
        raise MonthlyCapReached(
            f"The monthly cap of {cap:,} AI requests is reached for {month:%B %Y}."
        )
    return created


def _same_hold(existing: CreditHold, *, account: Account, amount: int) -> CreditHold:
    if existing.account_id != account.pk or existing.amount != amount:
        raise LedgerError(
            f"The hold key {existing.idempotency_key!r} was already used for "
            f"{existing.amount} on account {existing.account_id}."
        )
    return existing


def _the_hold(*, hold_id: int | None, hold_key: str | None) -> Q:
    """The hold named by its id or its key (exactly one of them)."""
    if (hold_id is None) == (hold_key is None):
        raise LedgerError("Give exactly one of hold_id and hold_key.")
    return Q(pk=hold_id) if hold_id is not None else Q(idempotency_key=hold_key)


def _find_hold(*, hold_id: int | None, hold_key: str | None) -> CreditHold:
    found = CreditHold.objects.filter(_the_hold(hold_id=hold_id, hold_key=hold_key)).first()
    if found is None:
        raise UnknownHold(f"No hold {hold_id if hold_id is not None else hold_key!r}.")
    return found


def extend_item_holds(*, item_ids: list[int], expires_at: dt.datetime) -> int:
    """Move the expiry of the held holds of these job items (their calls are in flight and
    their runner is alive); one UPDATE. Returns how many holds moved."""
    if not item_ids:
        return 0
    return CreditHold.objects.filter(item_id__in=item_ids, state=HoldState.HELD).update(
        expires_at=expires_at, updated_at=_now()
    )


# -- capture -------------------------------------------------------------------------------


def capture(
    *,
    capture_key: str,
    hold_id: int | None = None,
    hold_key: str | None = None,
    reason: str = "",
    actor=None,
) -> LedgerEntry:
    """Spend a held hold: one capture entry per ``capture_key``, ever.

    Replaying ``capture_key`` returns the first entry. If that entry spent another hold
    (an item charged on an earlier attempt), the given hold is released instead: an item
    is never charged twice. Raises UnknownHold, or HoldNotHeld for a released hold.
    """
    key = _key(capture_key, what="capture key")
    try:
        with transaction.atomic():
            found = _take_hold(hold_id=hold_id, hold_key=hold_key, to=HoldState.CAPTURED)
            if found is None:
                raise _NotHeld
            if found.unit == Unit.CREDIT:
                # balance - held is unchanged, so this cannot break the CHECK.
                [(after,)] = sql.update_returning(
                    Account.objects.filter(pk=found.account_id),
                    returning=("balance",),
                    balance=F("balance") - found.amount,
                    held=F("held") - found.amount,
                    updated_at=_now(),
                )
            else:
                [(after,)] = sql.update_returning(
                    RequestMeter.objects.filter(account_id=found.account_id, month=found.month),
                    returning=("used",),
                    used=F("used") + found.amount,
                    held=F("held") - found.amount,
                )
            return LedgerEntry.objects.create(
                account_id=found.account_id,
                kind=EntryKind.CAPTURE,
                unit=found.unit,
                amount=-found.amount,
                balance_after=after,
                idempotency_key=key,
                hold=found,
                reason=reason[:MAX_REASON],
                actor=actor,
                job_id=found.job_id,
                item_id=found.item_id,
            )
    except (_NotHeld, IntegrityError) as error:
        # Rolled back: a replayed capture key (an item charged on an earlier attempt), or
        # a hold that is not held. Decided on what the first capture wrote.
        found = _find_hold(hold_id=hold_id, hold_key=hold_key)
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return _replayed_capture(existing, found)
        if isinstance(error, IntegrityError):
            raise
        raise HoldNotHeld(
            f"Hold {found.idempotency_key!r} is {found.state}, not held: nothing captured."
        ) from None


class _NotHeld(Exception):
    """The hold to capture is unknown, released or captured: the capture is rolled back."""


_HOLD_COLUMNS = ("id", "account_id", "unit", "amount", "month", "job_id", "item_id")


def _take_hold(*, hold_id: int | None, hold_key: str | None, to: str) -> CreditHold | None:
    """held -> ``to`` in one statement that returns the hold; None if it was not held."""
    held = CreditHold.objects.filter(
        _the_hold(hold_id=hold_id, hold_key=hold_key), state=HoldState.HELD
    )
    rows = sql.update_returning(held, returning=_HOLD_COLUMNS, state=to, updated_at=_now())
    return CreditHold(**dict(zip(_HOLD_COLUMNS, rows[0], strict=True)), state=to) if rows else None


def _replayed_capture(existing: LedgerEntry, found: CreditHold) -> LedgerEntry:
    if existing.kind != EntryKind.CAPTURE:
        raise LedgerError(
            f"The capture key {existing.idempotency_key!r} was already used for a {existing.kind}."
        )
    if existing.hold_id != found.pk:
        release(hold_id=found.pk)
    return existing


# -- release -------------------------------------------------------------------------------


def release(*, hold_id: int | None = None, hold_key: str | None = None) -> CreditHold:
    """Give a hold's amount back (a failed call, a lost lease, an expiry). Idempotent:
    releasing a released or captured hold changes nothing."""
    with transaction.atomic():
        # The state guard makes the give-back happen once, even for two racing releases.
        taken = _take_hold(hold_id=hold_id, hold_key=hold_key, to=HoldState.RELEASED)
        if taken is None:
            pass  # released or captured already
        elif taken.unit == Unit.CREDIT:
            Account.objects.filter(pk=taken.account_id).update(
                held=F("held") - taken.amount, updated_at=_now()
            )
        else:
            RequestMeter.objects.filter(account_id=taken.account_id, month=taken.month).update(
                held=F("held") - taken.amount
            )
    return _find_hold(hold_id=hold_id, hold_key=hold_key)


def release_expired(*, now: dt.datetime | None = None) -> int:
    """Release every hold past its expiry (a worker died between hold and capture).

    Each release is its own transaction, so one slow or failing hold blocks no other.
    """
    now = now or _now()
    released = 0
    expired = CreditHold.objects.filter(state=HoldState.HELD, expires_at__lt=now)
    for pk in expired.values_list("pk", flat=True).iterator():
        if release(hold_id=pk).state == HoldState.RELEASED:
            released += 1
    if released:
        logger.info("released %s expired hold(s)", released)
    return released


# -- refund --------------------------------------------------------------------------------


def refund(
    *,
    capture_key: str,
    reason: str,
    actor=None,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Give back what one capture spent (at most once per capture)."""
    reason = _reason(reason)
    captured = LedgerEntry.objects.filter(idempotency_key=_key(capture_key)).first()
    if captured is None or captured.kind != EntryKind.CAPTURE:
        raise LedgerError(f"No capture {capture_key!r} to refund.")
    key = _key(idempotency_key) if idempotency_key else f"refund:{captured.idempotency_key}"
    existing = _existing_refund(key=key, captured=captured)
    if existing is not None:
        return existing
    amount = -captured.amount
    now = _now()
    try:
        with transaction.atomic():
            if captured.unit == Unit.CREDIT:
                Account.objects.filter(pk=captured.account_id).update(
                    balance=F("balance") + amount, updated_at=now
                )
                after = _read_balance(captured.account_id)
            else:
                month = captured.hold.month if captured.hold else month_start(captured.created_at)
                meters = RequestMeter.objects.filter(account_id=captured.account_id, month=month)
                meters.update(used=F("used") - amount)
                after = meters.values_list("used", flat=True).get()
            entry = LedgerEntry.objects.create(
                account_id=captured.account_id,
                kind=EntryKind.REFUND,
                unit=captured.unit,
                amount=amount,
                balance_after=after,
                idempotency_key=key,
                refund_of=captured,
                reason=reason,
                actor=actor,
                job_id=captured.job_id,
                item_id=captured.item_id,
            )
    except IntegrityError:
        existing = _existing_refund(key=key, captured=captured)
        if existing is None:
            raise
        return existing
    return entry


def _existing_refund(*, key: str, captured: LedgerEntry) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(Q(idempotency_key=key) | Q(refund_of=captured)).first()


# -- reading -------------------------------------------------------------------------------


def balance(account: Account) -> int:
    return _read_balance(account.pk)


def available(account: Account) -> int:
    return (
        Account.objects.filter(pk=account.pk)
        .annotate(free=F("balance") - F("held"))
        .values_list("free", flat=True)
        .get()
    )
