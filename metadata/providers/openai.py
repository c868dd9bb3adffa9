"""The OpenAI provider: one Chat Completions call with the preview and a strict JSON schema.

Works with any OpenAI-compatible server through ``base_url``. The SDK's own retries are
off (``max_retries=0``): one ``describe`` is exactly one HTTP request, and the job
runner's backoff (retry.backoff_delay, an item's not_before) is the only retry policy.
Every failure comes back as a classified ProviderError whose reason a person can read and
that never contains the API key.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from mediaopt.library.fields import FIELDS
from metadata import schema
from metadata.providers import prompt
from metadata.providers.base import (
    DescribeRequest,
    DescribeResult,
    ErrorKind,
    ProviderError,
)

NAME = "openai"
DEFAULT_MODEL = "gpt-4o-mini"
# Explicit, so an empty setting never silently picks up the OPENAI_BASE_URL environment
# variable inside the SDK: Django settings are the one source of truth.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Bounds cost and the damage a hijacked answer can do; the JSON needs a few hundred tokens.
MAX_COMPLETION_TOKENS = 800
# Metadata wants the likeliest words, not variety.
TEMPERATURE = 0.2

# Provider messages may echo the key ("Incorrect API key provided: sk-...") or part of it.
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{4,}", re.IGNORECASE)


@dataclass(frozen=True)
class OpenAIConfig:
    """How to reach the model, built by the caller. ``repr`` never shows the key (it ends
    up in logs)."""

    api_key: str = field(repr=False)
    base_url: str = ""
    model: str = DEFAULT_MODEL
    detail: str = "low"
    timeout: float = 60.0


# -- one client per process, endpoint, key and timeout ---------------------------------------
#
# A client owns a connection pool: one per call meant a new socket (and, against the real
# API, a TLS handshake) per image, left open until the garbage collector came by. Shared
# clients keep connections alive between calls, and a pool no larger than the number of
# calls a runner has in flight keeps the process's sockets bounded.

DEFAULT_CONCURRENCY = 64
# Enough for the installation's key and a handful of BYOK keys; an evicted client is
# not closed (a thread may still be using it), its sockets go with it once unreferenced.
MAX_CLIENTS = 32

_clients: OrderedDict[tuple, openai.OpenAI] = OrderedDict()
_clients_lock = threading.Lock()


def connection_limit() -> int:
    """Calls one runner makes at once: the setting, else the environment (how tests and
    benchmarks configure subprocesses), else 64. The runner's own concurrency reads it
    the same way, so the pool never makes its threads queue."""
    from django.conf import settings

    value = getattr(settings, "MEDIAOPT_JOB_CONCURRENCY", None)
    if value is None:
        value = os.environ.get("MEDIAOPT_JOB_CONCURRENCY") or DEFAULT_CONCURRENCY
    return max(int(float(value)), 1)


def shared_client(*, config: OpenAIConfig) -> openai.OpenAI:
    """The process's client for this endpoint, key and timeout, made on first use.

    Thread-safe: worker threads share one client (the SDK's clients are safe to share).
    """
    limit = connection_limit()
    base_url = config.base_url or DEFAULT_BASE_URL
    # The key's digest, not the key: the cache's keys may appear in a debugger or a dump.
    key_digest = hashlib.sha256(config.api_key.encode()).hexdigest()
    cache_key = (base_url, key_digest, float(config.timeout), limit)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is not None:
            _clients.move_to_end(cache_key)
            return client
        client = openai.OpenAI(
            api_key=config.api_key,
            base_url=base_url,
            timeout=config.timeout,
            max_retries=0,  # our retry policy is the only one: the SDK's would triple calls
            http_client=openai.DefaultHttpxClient(
                timeout=config.timeout,
                limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit),
            ),
        )
        _clients[cache_key] = client
        while len(_clients) > MAX_CLIENTS:
            _clients.popitem(last=False)
        return client


def forget_clients() -> None:
    """Drop every cached client (their sockets close once unreferenced)."""
    with _clients_lock:
        _clients.clear()


def _after_fork_in_child() -> None:
    # django-q2 forks its workers: a child must not share the parent's sockets, and a
    # lock another thread held at the fork would never be released here.
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def estimated_tokens(*, request: DescribeRequest, detail: str = "low") -> int:
    """Tokens OpenAI counts against its per-minute limit for this call, before it is made:
    the prompt (an image tile at low detail is 85, at high up to a few hundred for a
    512-px preview; text about 4 characters a token) plus the completion allowance, which
    OpenAI counts in full when the request arrives."""
    image = 85 if (detail or "low") == "low" else 255
    wanted = tuple(request.fields) or FIELDS
    text = (len(prompt.SYSTEM_PROMPT) + len(prompt.user_text(request, wanted)) + 400) // 4
    return image + text + MAX_COMPLETION_TOKENS


class OpenAIProvider:
    """Describe one image with one Chat Completions request (no retries here)."""

    name = NAME

    def __init__(self, config: OpenAIConfig, *, client: openai.OpenAI | None = None) -> None:
        if not config.api_key:
            # The SDK would raise its own error; this one the caller already knows how to
            # handle: a person must configure a key.
            raise ProviderError("No OpenAI API key is configured.", kind=ErrorKind.AUTH)
        self.config = config
        self.client = client or shared_client(config=config)
        # x-ratelimit-* headers of the last answer (success or error), for the limiter.
        self.last_rate_limit: dict[str, str] = {}

    def describe(self, request: DescribeRequest) -> DescribeResult:
        if not request.preview_jpeg:
            raise ProviderError("There is no preview image to send.", kind=ErrorKind.INVALID)
        unknown = [name for name in request.fields if name not in FIELDS]
        if unknown:
            raise ProviderError(f"Unknown fields: {', '.join(unknown)}.", kind=ErrorKind.INVALID)
        wanted = tuple(request.fields) or FIELDS

        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.config.model,
                messages=self._messages(request, wanted),
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "name": prompt.SCHEMA_NAME,
                        "schema": prompt.output_schema(wanted),
                        "strict": True,
                    },
                },
                max_completion_tokens=MAX_COMPLETION_TOKENS,
                temperature=TEMPERATURE,
                # Customers' images are not kept by the provider.
                store=False,
            )
        except openai.APIStatusError as exc:
            self._remember_rate_limit(exc.response.headers)
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            # Before APIConnectionError: a timeout is a subclass of it.
            raise ProviderError(
                f"The provider did not answer within {self.config.timeout:g} s.",
                kind=ErrorKind.TRANSIENT,
            ) from None
        except openai.APIConnectionError:
            raise ProviderError(
                f"Could not connect to the provider at {self._host()}.",
                kind=ErrorKind.TRANSIENT,
            ) from None

        self._remember_rate_limit(raw.headers)
        try:
            completion = raw.parse()
        except (openai.APIResponseValidationError, ValueError) as exc:
            raise ProviderError(
                f"The provider's answer could not be read ({type(exc).__name__}).",
                kind=ErrorKind.BAD_OUTPUT,
            ) from None

        output = self._output(completion, wanted)
        usage = completion.usage
        return DescribeResult(
            output=output,
            provider=NAME,
            model=completion.model or self.config.model,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        )

    # -- request -------------------------------------------------------------------------

    def _messages(self, request: DescribeRequest, wanted: tuple[str, ...]) -> list[dict]:
        data_url = "data:image/jpeg;base64," + base64.b64encode(request.preview_jpeg).decode()
        return [
            {"role": "system", "content": prompt.SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt.user_text(request, wanted)},
                    {
                        "type": "image_url",
                        "image_url": {"url": data_url, "detail": self.config.detail},
                    },
                ],
            },
        ]

    # -- response ------------------------------------------------------------------------

    def _output(self, completion: Any, wanted: tuple[str, ...]) -> dict:
        if not completion.choices:
            raise ProviderError("The model returned no answer.", kind=ErrorKind.BAD_OUTPUT)
        choice = completion.choices[0]
        message = choice.message
        if getattr(message, "refusal", None):
            refusal = prompt.plain(message.refusal, 200)
            raise ProviderError(f"The model refused: {refusal}", kind=ErrorKind.BAD_OUTPUT)
        if choice.finish_reason == "length":
            raise ProviderError(
                "The model's answer was cut off (too long).", kind=ErrorKind.BAD_OUTPUT
            )
        if choice.finish_reason == "content_filter":
            raise ProviderError(
                "The provider's content filter blocked the answer.", kind=ErrorKind.BAD_OUTPUT
            )
        content = message.content
        if not content:
            raise ProviderError("The model returned an empty answer.", kind=ErrorKind.BAD_OUTPUT)
        # Shapes models commonly return (a fenced JSON, keywords as one string, "false"
        # as a string) are read as meant instead of paying for a second call.
        try:
            data = schema.parse_output(content)
        except ValueError as exc:
            what = "a JSON object" if "object" in str(exc) else "valid JSON"
            raise ProviderError(
                f"The model's answer was not {what}.", kind=ErrorKind.BAD_OUTPUT
            ) from None
        data = schema.coerce_output(data)
        return validate_output(data, wanted)

    def _remember_rate_limit(self, headers: Any) -> None:
        self.last_rate_limit = {
            key.lower(): value
            for key, value in headers.items()
            if key.lower().startswith("x-ratelimit-")
        }

    def _host(self) -> str:
        # Only the host: a base URL may carry credentials (https://user:pass@host/v1).
        return urlsplit(self.config.base_url or DEFAULT_BASE_URL).hostname or "(unknown)"

    # -- errors --------------------------------------------------------------------------

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        status = exc.status_code
        if isinstance(exc, openai.AuthenticationError):
            # Never the provider's message: OpenAI's echoes (part of) the key.
            return ProviderError(
                "The API key was rejected (401). Check the key in the settings.",
                kind=ErrorKind.AUTH,
            )
        if isinstance(exc, openai.PermissionDeniedError):
            return ProviderError(
                "The API key may not use this model or endpoint (403).", kind=ErrorKind.AUTH
            )
        if isinstance(exc, openai.RateLimitError):
            if _is_insufficient_quota(exc):
                return ProviderError(
                    "The provider account has no quota left (insufficient_quota). "
                    "Add credits or raise its limit, then resume.",
                    kind=ErrorKind.QUOTA,
                )
            return ProviderError(
                "The provider is rate limiting requests (429).",
                kind=ErrorKind.TRANSIENT,
                retry_after=retry_after_seconds(exc.response.headers),
                rate_limited=True,
            )
        if status >= 500 or status in {408, 409}:
            # The SDK's own list of retryable statuses: server-side and conflict/timeouts.
            return ProviderError(
                f"The provider failed ({status}).",
                kind=ErrorKind.TRANSIENT,
                retry_after=retry_after_seconds(exc.response.headers),
            )
        if status == 404:
            return ProviderError(
                f"The model {self.config.model!r} or the endpoint at {self._host()} "
                "was not found (404).",
                kind=ErrorKind.INVALID,
            )
        detail = _provider_message(exc, self.config.api_key)
        suffix = f": {detail}" if detail else "."
        return ProviderError(
            f"The provider rejected the request ({status}){suffix}", kind=ErrorKind.INVALID
        )


def validate_output(data: object, wanted: tuple[str, ...] = FIELDS) -> dict:
    """Check the model's JSON against the schema; return the wanted fields and verdicts.

    Raises ProviderError(BAD_OUTPUT) when it is off-schema. Strict mode should make that
    impossible on OpenAI, but compatible servers may ignore the schema: they may leave
    out ``text_in_image`` and ``image_type`` (nothing depends on them), not the rest.
    """
    if not isinstance(data, dict):
        raise ProviderError("The model's answer was not a JSON object.", kind=ErrorKind.BAD_OUTPUT)
    missing = [key for key in (*wanted, "is_decorative") if key not in data]
    if missing:
        raise ProviderError(
            f"The model's answer lacks: {', '.join(missing)}.", kind=ErrorKind.BAD_OUTPUT
        )
    wrong: list[str] = []
    for key in (*wanted, *prompt.EXTRA_KEYS):
        if key not in data:
            continue
        value = data[key]
        if key == "keywords":
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        elif key == "is_decorative":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            wrong.append(key)
    if wrong:
        raise ProviderError(
            f"The model's answer has wrong types for: {', '.join(wrong)}.",
            kind=ErrorKind.BAD_OUTPUT,
        )
    output = {key: data[key] for key in wanted}
    output["is_decorative"] = data["is_decorative"]
    output["text_in_image"] = prompt.plain(data.get("text_in_image", ""), 500)
    image_type = str(data.get("image_type", "")).strip().lower()
    output["image_type"] = image_type if image_type in prompt.IMAGE_TYPES else ""
    return output


def retry_after_seconds(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _is_insufficient_quota(exc: openai.APIStatusError) -> bool:
    # The SDK puts body["error"] into exc.body; code and type both say it on OpenAI.
    candidates: list[object] = [exc.code, getattr(exc, "type", None)]
    body = exc.body
    if isinstance(body, dict):
        candidates += [body.get("code"), body.get("type")]
        error = body.get("error")
        if isinstance(error, dict):
            candidates += [error.get("code"), error.get("type")]
    return "insufficient_quota" in candidates


def _provider_message(exc: openai.APIStatusError, api_key: str) -> str:
    body = exc.body
    message: object = None
    if isinstance(body, dict):
        message = body.get("message")
        error = body.get("error")
        if message is None and isinstance(error, dict):
            message = error.get("message")
    if not isinstance(message, str):
        return ""
    return prompt.plain(redact(message, api_key), 200)


def redact(text: str, api_key: str) -> str:
    """Remove the key, and anything shaped like a key, from a provider's text."""
    if api_key:
        text = text.replace(api_key, "[key]")
    return _KEY_LIKE.sub("[key]", text)
