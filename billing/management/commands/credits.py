"""``manage.py credits balance|grant|ledger|rotate-keys``: the operator's view of credits.

Thin: every write goes through billing.ledger or billing.crypto.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import crypto, estimate, ledger
from billing.models import Account, LedgerEntry


class Command(BaseCommand):
    help = "Credits of the installation's account: balance, grant, ledger, rotate-keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account", type=int, help="Account id (default: the installation's account)."
        )
        sub = parser.add_subparsers(dest="action", required=True, parser_class=CommandParser)
        balance = sub.add_parser("balance", help="Balance, held and available credits.")
        balance.add_argument("--json", action="store_true")
        grant = sub.add_parser("grant", help="Add credits, with a reason.")
        grant.add_argument("amount", type=int)
        grant.add_argument("--reason", required=True)
        grant.add_argument("--user", help="Username recorded as who made the grant.")
        grant.add_argument("--idempotency-key", help="Run twice, grant once.")
        history = sub.add_parser("ledger", help="Ledger entries, newest first.")
        history.add_argument("--json", action="store_true")
        history.add_argument("--limit", type=int, default=50)
        sub.add_parser("rotate-keys", help="Re-encrypt stored API keys with the first Fernet key.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "rotate-keys":
            return self.rotate_keys()
        account = self.account(options.get("account"))
        if action == "balance":
            return self.balance(account, as_json=options["json"])
        if action == "grant":
            return self.grant(account, options)
        if action == "ledger":
            return self.ledger(account, as_json=options["json"], limit=options["limit"])
        raise CommandError(f"Unknown action {action!r}.")

    def account(self, pk: int | None) -> Account:
        if pk is None:
            return Account.objects.current()
        try:
            return Account.objects.get(pk=pk)
        except Account.DoesNotExist:
            raise CommandError(f"No account {pk}.") from None

    def balance(self, account: Account, *, as_json: bool) -> None:
        account.refresh_from_db()
        data = {
            "account": account.pk,
            "name": account.name,
            "plan": account.plan,
            "mode": account.mode,
            "balance": account.balance,
            "held": account.held,
            "available": account.available,
        }
        if account.mode == "byok":
            usage = estimate.month_usage(account)
            data["byok"] = {
                "month": usage.month.isoformat(),
                "used": usage.used,
                "held": usage.held,
                "cap": usage.cap,
                "remaining": usage.remaining,
            }
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(
            f"{account.name} ({account.plan}, {account.mode}): balance {account.balance:,}, "
            f"held {account.held:,}, available {account.available:,}"
        )
        if "byok" in data:
            b = data["byok"]
            cap = "no cap" if b["cap"] is None else f"cap {b['cap']:,}"
            self.stdout.write(f"BYOK {b['month'][:7]}: {b['used']:,} requests used, {cap}")

    def grant(self, account: Account, options: dict[str, Any]) -> None:
        actor = None
        if options.get("user"):
            try:
                actor = get_user_model().objects.get_by_natural_key(options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user {options['user']!r}.") from None
        try:
            entry = ledger.grant(
                account=account,
                amount=options["amount"],
                reason=options["reason"],
                actor=actor,
                idempotency_key=options.get("idempotency_key"),
            )
        except ledger.LedgerError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Granted {entry.amount:,} credits to {account.name}: "
                f"balance {entry.balance_after:,}."
            )
        )

    def ledger(self, account: Account, *, as_json: bool, limit: int) -> None:
        entries = (
            LedgerEntry.objects.filter(account=account)
            .select_related("actor")
            .order_by("-created_at", "-id")[: max(limit, 0)]
        )
        rows = [
            {
                "id": e.pk,
                "created_at": e.created_at.isoformat(),
                "kind": e.kind,
                "unit": e.unit,
                "amount": e.amount,
                "balance_after": e.balance_after,
                "reason": e.reason,
                "actor": e.actor.get_username() if e.actor else None,
                "job_id": e.job_id,
                "item_id": e.item_id,
                "idempotency_key": e.idempotency_key,
            }
            for e in entries
        ]
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No entries.")
        for r in rows:
            who = r["actor"] or ("job" if r["item_id"] is not None else "command")
            self.stdout.write(
                f"{r['created_at'][:19]}  {r['kind']:<8} {r['amount']:>+8,} {r['unit']:<8} "
                f"-> {r['balance_after']:>8,}  {who:<12} {r['reason']}"
            )

    def rotate_keys(self) -> None:
        result = crypto.rotate_keys()
        self.stdout.write(f"Re-encrypted {result.rotated} key(s) with the first Fernet key.")
        if result.unreadable:
            ids = ", ".join(str(pk) for pk in result.unreadable)
            self.stderr.write(
                f"Cannot decrypt the key of account(s) {ids} with any FERNET_KEYS: "
                "set those keys again."
            )
