"""Customers' API keys at rest: MultiFernet over ``settings.FERNET_KEYS`` (the first encrypts).

The plain key exists only in memory, between ``decrypted_key`` and the provider call: never
in a log line, a repr, an exception message, a page or a task argument (django-q2 pickles
arguments in clear and shows them in its admin). Only its last four characters are stored
in clear, for people to recognise it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Account

MAX_KEY_LENGTH = 512


class ApiKeyError(ValueError):
    """A key that cannot be stored as given. The message never contains the key."""


class KeyUnreadable(Exception):
    """The stored token cannot be decrypted with any of the configured Fernet keys."""


def _fernet() -> MultiFernet:
    keys = list(settings.FERNET_KEYS)
    if not keys:
        raise KeyUnreadable("no FERNET_KEYS are configured")
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        # `from None`: the original exception may carry the token; keep tracebacks clean.
        raise KeyUnreadable("the stored API key cannot be decrypted") from None


def validate_key(key: str) -> str:
    """The key as it will be stored (stripped). Raises ApiKeyError; never echoes the key."""
    key = (key or "").strip()
    if not key:
        raise ApiKeyError("The API key is empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise ApiKeyError(f"The API key is longer than {MAX_KEY_LENGTH} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ApiKeyError("The API key contains spaces or control characters.")
    if len(key) < 8:
        raise ApiKeyError("The API key is too short.")
    return key


def set_api_key(*, account: Account, key: str, actor=None) -> Account:
    """Encrypt and store ``key`` for ``account``; remember its last four characters."""
    key = validate_key(key)
    token = encrypt(key)
    now = timezone.now()
    with transaction.atomic():
        # update(), not save(): the admin's stale instance must never write balance/held.
        Account.objects.filter(pk=account.pk).update(
            encrypted_api_key=token,
            api_key_last4=key[-4:],
            api_key_set_at=now,
            api_key_set_by=actor,
            updated_at=now,
        )
    account.encrypted_api_key, account.api_key_last4 = token, key[-4:]
    account.api_key_set_at, account.api_key_set_by = now, actor
    return account


def clear_api_key(*, account: Account, actor=None) -> Account:
    now = timezone.now()
    with transaction.atomic():
        Account.objects.filter(pk=account.pk).update(
            encrypted_api_key="",
            api_key_last4="",
            api_key_set_at=now,
            api_key_set_by=actor,
            updated_at=now,
        )
    account.encrypted_api_key, account.api_key_last4 = "", ""
    account.api_key_set_at, account.api_key_set_by = now, actor
    return account


def decrypted_key(account: Account) -> str | None:
    """The account's key, or None when none is set. Raises KeyUnreadable."""
    if not account.encrypted_api_key:
        return None
    return decrypt(account.encrypted_api_key)


@dataclass(frozen=True)
class Rotation:
    rotated: int
    unreadable: list[int]  # account ids whose token no configured key decrypts


def rotate_keys() -> Rotation:
    """Re-encrypt every stored key with the first Fernet key (MultiFernet.rotate).

    After this, older Fernet keys can be dropped from FERNET_KEYS. Each account is its
    own conditional update, so a key replaced meanwhile is not overwritten by its old value.
    """
    fernet = _fernet()
    rotated, unreadable = 0, []
    for pk, token in Account.objects.exclude(encrypted_api_key="").values_list(
        "pk", "encrypted_api_key"
    ):
        try:
            new = fernet.rotate(token.encode()).decode()
        except InvalidToken:
            unreadable.append(pk)
            continue
        rotated += Account.objects.filter(pk=pk, encrypted_api_key=token).update(
            encrypted_api_key=new
        )
    return Rotation(rotated=rotated, unreadable=unreadable)
