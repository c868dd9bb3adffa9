"""The shared store of the provider rate limiter: the window arithmetic and the two
backends (Redis and the database) that keep the buckets.

The window: a sliding sum over one-second buckets. A call is admitted when the buckets of
the last ``SPAN`` seconds *plus the current bucket* (61 buckets, a little more than a
minute) leave room for it. Because the counted stretch is never shorter than a minute,
the admissions in any 60-second stretch stay within the limit, whatever window the
provider uses. A fixed one-minute window would let up to twice the limit through across a
boundary (the end of one minute and the start of the next), which a sliding-window
provider answers with 429s. The price is at most 1/61 of the limit (590 of 600 a minute).
Buckets keep the state small (61 counters per key) where an exact log would keep one
entry per call, and let both backends share the same arithmetic (``wait_for_room``).

Backends: with ``settings.REDIS_URL`` a Lua script (atomic in Redis, one round trip per
attempt); without, a database row per bucket (``RateWindow``), updated in a short
transaction that first locks a stripe's control row, correct on SQLite (IMMEDIATE
transactions) and PostgreSQL (the row lock serialises that stripe; each later statement
of the transaction reads what the previous holder committed). The budget is split into
stripes whose shares add up to it, so admissions on PostgreSQL lock one of several rows
instead of all waiting for the same one. Nobody sleeps inside a
transaction: an attempt either admits or says how long to wait, and ``Limiter.acquire``
(``metadata.ratelimit``) sleeps between attempts.

Time comes from the shared store, never the host: Redis ``TIME`` inside the script, the
database's clock (``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite)
inside the transaction. Every host then counts the same buckets, so hosts whose clocks
differ (by seconds or minutes) still admit one budget per window between them, and no
host's clean-up deletes buckets another still counts. Tests may inject a clock instead.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F

from mediaopt.library import sql
from metadata.providers.base import ErrorKind, ProviderError

logger = logging.getLogger(__name__)

SPAN_SECONDS = 60
BUCKET_SECONDS = 1
# The database backend's row that holds "blocked until" and serialises admissions.
CONTROL_WINDOW = 0
# An unlimited dimension (a setting of 0).
UNLIMITED = 2**62


@dataclass(frozen=True)
class Limits:
    """Requests and tokens a minute; 0 means no limit of that kind."""

    requests_per_minute: int
    tokens_per_minute: int


# -- the arithmetic shared by both backends (the Lua script mirrors it) -------------------


def wait_for_room(
    *,
    buckets: Iterable[tuple[int, int, int]],
    now: float,
    requests_per_minute: int,
    tokens_per_minute: int,
    tokens: int,
    span: int = SPAN_SECONDS,
    bucket: int = BUCKET_SECONDS,
) -> float:
    """0.0 if one more call of ``tokens`` fits beside ``buckets``; else the seconds until
    enough of the oldest buckets have left the counted stretch for it to fit.

    ``buckets``: (start, requests, tokens) of every bucket still counted. A call larger
    than the whole token budget goes through alone (an empty window), rather than never.
    """
    rows = sorted(buckets)
    used_requests = sum(row[1] for row in rows)
    used_tokens = sum(row[2] for row in rows)
    rpm = requests_per_minute or UNLIMITED
    tpm = tokens_per_minute or UNLIMITED
    need_requests = used_requests + 1 - rpm
    need_tokens = used_tokens + tokens - tpm
    if need_requests <= 0 and (need_tokens <= 0 or used_tokens == 0):
        return 0.0
    freed_requests = freed_tokens = 0
    for start, requests, spent in rows:
        freed_requests += requests
        freed_tokens += spent
        if freed_requests >= need_requests and (
            freed_tokens >= need_tokens or freed_tokens == used_tokens
        ):
            # A bucket stops counting once the current bucket starts past start + span.
            return max(start + span + bucket - now, 0.001)
    return float(bucket)


class Backend(Protocol):
    def admit(
        self, *, key: str, now: float | None, limits: Limits, tokens: int, span: int, bucket: int
    ) -> float:
        """Count one call and return 0.0, or count nothing and return seconds to wait.

        ``now`` None: the store's own clock."""
        ...

    def block_until(self, *, key: str, until: float) -> None:
        """Nobody is admitted before ``until`` (epoch seconds); never shortens a block."""
        ...

    def block_for(self, *, key: str, seconds: float, now: float | None) -> None:
        """Nobody is admitted for ``seconds`` from ``now`` (None: the store's clock)."""
        ...


class LimiterUnavailable(ProviderError):
    """The shared store failed for another reason than a lock timeout: the call is not
    admitted, and counts as a transient failure (its item retries later)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"rate limiter unavailable: {reason}", kind=ErrorKind.TRANSIENT)


def stripe_shares(total: int, stripes: int) -> list[int]:
    """``total`` split into ``stripes`` shares that add up to it (0: no limit, every share
    unlimited)."""
    if not total:
        return [0] * stripes
    return [total // stripes + (1 if i < total % stripes else 0) for i in range(stripes)]


# The least tokens-per-minute share of a stripe: many calls' worth (a call is about 1,300
# tokens), so no ordinary call is larger than its stripe's share. One that is goes through
# alone in the stripe it tries, which, with every stripe doing so, could pass the whole
# budget: with fewer, larger stripes it cannot happen below this size.
MIN_STRIPE_TOKENS = 20_000


def stripe_count(limits: Limits) -> int:
    """Stripes of the database backend: one on SQLite (its write lock serialises every
    transaction anyway), else ``MEDIAOPT_RATE_LIMIT_STRIPES``, never more than a limit so
    no share is 0 (which would read as unlimited), nor so many that a tokens share is
    under MIN_STRIPE_TOKENS."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return 1
    wanted = max(int(getattr(settings, "MEDIAOPT_RATE_LIMIT_STRIPES", 4)), 1)
    if limits.requests_per_minute:
        wanted = min(wanted, limits.requests_per_minute)
    if limits.tokens_per_minute:
        wanted = min(wanted, max(limits.tokens_per_minute // MIN_STRIPE_TOKENS, 1))
    return wanted


class DatabaseBackend:
    """A row per bucket and key (RateWindow), in a short transaction per attempt.

    The budget is split into stripes (``stripe_count``), each with its own control row and
    buckets and a share of the limits, so concurrent admissions lock different rows instead
    of all waiting for one: an attempt starts at a random stripe and moves on to the next
    only when that one is full. The shares add up to the limits, so the sum of admissions
    in any stretch stays within them, and one caller alone can still use all of it. The
    key's own row (stripe 0's control row) also holds "blocked until", read without a lock.
    """

    def admit(
        self, *, key: str, now: float | None, limits: Limits, tokens: int, span: int, bucket: int
    ) -> float:
        from metadata.models import RateWindow

        try:
            stripes = stripe_count(limits)
            blocked_until = None  # one stripe: read with its lock, which is the key's row
            if stripes > 1:
                blocked = RateWindow.objects.filter(
                    key=key, window_start=CONTROL_WINDOW
                ).values_list("blocked_until", flat=True)
                blocked_until = max(blocked, default=0.0)
            requests = stripe_shares(limits.requests_per_minute, stripes)
            budget = stripe_shares(limits.tokens_per_minute, stripes)
            first = random.randrange(stripes)
            order = [(first + step) % stripes for step in range(stripes)]
            waits, busy = [], []
            # First every stripe whose row nobody holds; only then wait for a held one.
            for wait_for_lock, stripes_now in ((False, order), (True, busy)):
                for stripe in list(stripes_now):
                    wait = self._admit_stripe(
                        key=stripe_key(key, stripe),
                        now=now,
                        limits=Limits(requests[stripe], budget[stripe]),
                        tokens=tokens,
                        span=span,
                        bucket=bucket,
                        blocked_until=blocked_until,
                        wait_for_lock=wait_for_lock or stripes == 1,
                    )
                    if wait is None:
                        busy.append(stripe)
                    elif wait <= 0:
                        return 0.0
                    else:
                        waits.append(wait)
            return min(waits)
        except OperationalError as error:
            if not _is_lock_timeout(error):
                # A dropped connection, a missing table: retrying every 50 ms for ever
                # would hide it. The call fails as transient and its item retries later.
                logger.warning("rate limiter: database error (%s); the call is not admitted", error)
                raise LimiterUnavailable(str(error)) from error
            # SQLite under a burst of writers ("database is locked"): try again shortly
            # instead of failing a paid call that never started.
            logger.info("rate limiter: database busy (%s); trying again", error)
            return 0.05

    def _admit_stripe(
        self,
        *,
        key: str,
        now: float | None,
        limits: Limits,
        tokens: int,
        span: int,
        bucket: int,
        blocked_until: float | None,
        wait_for_lock: bool,
    ) -> float | None:
        """Seconds to wait (0.0: admitted), or None when ``wait_for_lock`` is False and
        another caller holds this stripe. ``blocked_until`` None: this stripe's row says."""
        from metadata.models import RateWindow

        with transaction.atomic():
            locked = self._lock_control(key) if wait_for_lock else self._try_lock_control(key)
            if locked is None:
                return None
            # The clock read with the lock, by its holder, so buckets follow each other.
            row_blocked_until, clock = locked
            now = clock if now is None else now
            if blocked_until is None:
                blocked_until = row_blocked_until
            current = int(now // bucket) * bucket
            oldest = current - span
            if blocked_until > now:
                return blocked_until - now
            rows = list(
                RateWindow.objects.filter(key=key, window_start__gte=oldest).values_list(
                    "window_start", "requests", "tokens"
                )
            )
            wait = wait_for_room(
                buckets=rows,
                now=now,
                requests_per_minute=limits.requests_per_minute,
                tokens_per_minute=limits.tokens_per_minute,
                tokens=tokens,
                span=span,
                bucket=bucket,
            )
            if wait > 0:
                return wait
            # Conditional, so even a caller that skipped the lock above could not push
            # one bucket past the whole share.
            counted = RateWindow.objects.filter(
                key=key,
                window_start=current,
                requests__lt=limits.requests_per_minute or UNLIMITED,
            ).update(requests=F("requests") + 1, tokens=F("tokens") + tokens)
            if not counted:
                RateWindow.objects.create(key=key, window_start=current, requests=1, tokens=tokens)
                # Once per new bucket: buckets that no longer count go.
                RateWindow.objects.filter(
                    key=key, window_start__gt=CONTROL_WINDOW, window_start__lt=oldest
                ).delete()
            return 0.0

    def block_for(self, *, key: str, seconds: float, now: float | None) -> None:
        start = database_now() if now is None else now
        self.block_until(key=key, until=start + seconds)

    def block_until(self, *, key: str, until: float) -> None:
        """One conditional UPDATE (atomic on its own: no lock to take first), so a block
        is never shortened."""
        from metadata.models import RateWindow

        control = RateWindow.objects.filter(key=key, window_start=CONTROL_WINDOW)
        if not control.exists():
            RateWindow.objects.bulk_create(
                [RateWindow(key=key, window_start=CONTROL_WINDOW)], ignore_conflicts=True
            )
        control.filter(blocked_until__lt=until).update(blocked_until=until)

    @staticmethod
    def _lock_control(key: str) -> tuple[float, float]:
        """Lock the stripe's control row (creating it once); its "blocked until" and the
        database's clock, read in the same statement.

        A no-op UPDATE is the lock: PostgreSQL's row lock (held to commit) makes every
        other admission for this stripe wait, and on SQLite the write lock is the
        IMMEDIATE transaction's anyway. SELECT FOR UPDATE would do nothing on SQLite.
        """
        from metadata.models import RateWindow

        control = RateWindow.objects.filter(key=key, window_start=CONTROL_WINDOW)
        clock = [_clock_sql()]
        lock = {"returning": ("blocked_until",), "also": clock, "requests": F("requests")}
        rows = sql.update_returning(control, **lock)
        if not rows:
            RateWindow.objects.bulk_create(
                [RateWindow(key=key, window_start=CONTROL_WINDOW)], ignore_conflicts=True
            )
            rows = sql.update_returning(control, **lock)
        blocked_until, now = rows[0]
        return float(blocked_until), float(now)

    @staticmethod
    def _try_lock_control(key: str) -> tuple[float, float] | None:
        """Lock the stripe's control row unless another transaction holds it (PostgreSQL's
        SKIP LOCKED; elsewhere, the waiting lock): as _lock_control, or None when held."""
        from django.db import connection
        from django.db.models.expressions import RawSQL

        from metadata.models import RateWindow

        if connection.vendor != "postgresql":
            return DatabaseBackend._lock_control(key)
        control = RateWindow.objects.select_for_update(skip_locked=True).filter(
            key=key, window_start=CONTROL_WINDOW
        )
        row = control.annotate(clock=RawSQL(_clock_sql(), [])).values_list("blocked_until", "clock")
        if row := row.first():
            return float(row[0]), float(row[1])
        # Held, or missing. A plain read tells which without waiting (an INSERT ... ON
        # CONFLICT would wait for the holder); a missing row is made and locked.
        if RateWindow.objects.filter(key=key, window_start=CONTROL_WINDOW).exists():
            return None
        return DatabaseBackend._lock_control(key)


def stripe_key(key: str, stripe: int) -> str:
    """Stripe 0 is the key itself (so one stripe is the unstriped layout)."""
    return key if stripe == 0 else f"{key}#{stripe}"


def _is_lock_timeout(error: OperationalError) -> bool:
    """SQLite's busy timeout ran out; PostgreSQL's lock_timeout (55P03) likewise."""
    text = str(error).lower()
    code = getattr(getattr(error, "__cause__", None), "sqlstate", None) or getattr(
        getattr(error, "__cause__", None), "pgcode", None
    )
    return "database is locked" in text or "database table is locked" in text or code == "55P03"


def _clock_sql() -> str:
    """The database's clock in epoch seconds, as an SQL expression (one clock for every
    host); PostgreSQL's and SQLite's, the two databases mediaopt runs on."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return "EXTRACT(EPOCH FROM clock_timestamp())"
    return "(julianday('now') - 2440587.5) * 86400.0"


def database_now() -> float:
    """Epoch seconds from the database's clock."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_clock_sql()}")
        return float(cursor.fetchone()[0])


# KEYS: requests hash, tokens hash (field = bucket start), blocked-until string.
# ARGV: now ('' for the server's TIME), bucket, span, rpm, tpm, tokens. Returns {admitted
# 0/1, wait as a string}
# (Redis truncates Lua numbers to integers in replies).
_ADMIT_LUA = """
local now = tonumber(ARGV[1])
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local bucket = tonumber(ARGV[2])
local span = tonumber(ARGV[3])
local rpm = tonumber(ARGV[4])
local tpm = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if blocked > now then
  return {0, tostring(blocked - now)}
end
local current = math.floor(now / bucket) * bucket
local oldest = current - span
local req = redis.call('HGETALL', KEYS[1])
local starts = {}
local reqs = {}
local used_r = 0
for i = 1, #req, 2 do
  local s = tonumber(req[i])
  if s < oldest then
    redis.call('HDEL', KEYS[1], req[i])
    redis.call('HDEL', KEYS[2], req[i])
  else
    table.insert(starts, s)
    reqs[s] = tonumber(req[i + 1])
    used_r = used_r + reqs[s]
  end
end
local toks = {}
local used_t = 0
for _, s in ipairs(starts) do
  toks[s] = tonumber(redis.call('HGET', KEYS[2], tostring(s)) or '0')
  used_t = used_t + toks[s]
end
local need_r = used_r + 1 - rpm
local need_t = used_t + cost - tpm
if need_r <= 0 and (need_t <= 0 or used_t == 0) then
  redis.call('HINCRBY', KEYS[1], tostring(current), 1)
  redis.call('HINCRBY', KEYS[2], tostring(current), cost)
  redis.call('EXPIRE', KEYS[1], span * 2 + bucket)
  redis.call('EXPIRE', KEYS[2], span * 2 + bucket)
  return {1, '0'}
end
table.sort(starts)
local freed_r = 0
local freed_t = 0
for _, s in ipairs(starts) do
  freed_r = freed_r + reqs[s]
  freed_t = freed_t + toks[s]
  if freed_r >= need_r and (freed_t >= need_t or freed_t == used_t) then
    return {0, tostring(math.max(s + span + bucket - now, 0.001))}
  end
end
return {0, tostring(bucket)}
"""

# KEYS: blocked-until string. ARGV: until (epoch seconds, or '' for the server's TIME
# plus ARGV[3] seconds), ttl in ms. Only ever later.
_BLOCK_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if ARGV[1] == '' then
  local t = redis.call('TIME')
  wanted = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[3])
end
if wanted > current then
  redis.call('SET', KEYS[1], tostring(wanted), 'PX', ARGV[2])
end
return 1
"""

_redis_lock = threading.Lock()
_redis_clients: dict[str, object] = {}


class RedisBackend:
    """The same buckets in two Redis hashes per key, moved only by Lua scripts."""

    def __init__(self, url: str, *, prefix: str = "mediaopt:ratelimit") -> None:
        import redis

        with _redis_lock:
            client = _redis_clients.get(url)
            if client is None:
                # One connection pool per process and URL, shared by the runner's threads.
                client = redis.Redis.from_url(url)
                _redis_clients[url] = client
        self.client = client
        self.prefix = prefix
        self._admit = client.register_script(_ADMIT_LUA)  # type: ignore[attr-defined]
        self._block = client.register_script(_BLOCK_LUA)  # type: ignore[attr-defined]

    def _keys(self, key: str) -> list[str]:
        # One hash slot ({key}) so the script's keys stay together on a Redis Cluster.
        return [f"{self.prefix}:{{{key}}}:{part}" for part in ("requests", "tokens", "blocked")]

    def admit(
        self, *, key: str, now: float | None, limits: Limits, tokens: int, span: int, bucket: int
    ) -> float:
        import redis

        try:
            admitted, wait = self._admit(
                keys=self._keys(key),
                args=[
                    "" if now is None else repr(now),
                    bucket,
                    span,
                    limits.requests_per_minute or UNLIMITED,
                    limits.tokens_per_minute or UNLIMITED,
                    tokens,
                ],
            )
        except redis.RedisError as error:
            # As the database backend: the call fails as transient (its item retries
            # later) instead of the exception ending the job's runner.
            logger.warning("rate limiter: Redis error (%s); the call is not admitted", error)
            raise LimiterUnavailable(str(error)) from error
        return 0.0 if int(admitted) == 1 else float(wait)

    def block_until(self, *, key: str, until: float) -> None:
        ttl_ms = max(int((until - time.time()) * 1000) + 1000, 1000)
        self._block(keys=self._keys(key)[2:], args=[repr(until), ttl_ms, 0])

    def block_for(self, *, key: str, seconds: float, now: float | None) -> None:
        if now is not None:
            self.block_until(key=key, until=now + seconds)
            return
        ttl_ms = max(int(seconds * 1000) + 1000, 1000)
        self._block(keys=self._keys(key)[2:], args=["", ttl_ms, repr(seconds)])


def default_backend() -> Backend:
    """Redis when ``REDIS_URL`` is set (the broker's server: one service to run), else the
    database."""
    url = getattr(settings, "REDIS_URL", "")
    return RedisBackend(url) if url else DatabaseBackend()
