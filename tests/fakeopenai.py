"""A fake OpenAI-compatible server: real HTTP on 127.0.0.1, ``POST /v1/chat/completions``.

The official SDK talks to it exactly as it would to OpenAI, so tests exercise the real
client, headers, status codes and timeouts. Its normal answer is derived from the image it
receives (see ``expected_metadata``), so a test can prove that the right image reached the
model and that the answer came back to the right asset.

Faults are queued and consumed one per request (``fail_next``, ``script``), or permanent
(``always``). Usage::

    with FakeOpenAI(api_key="sk-test") as fake:
        fake.script([Fault.rate_limited(retry_after=2), "ok"])
        ... OpenAI(base_url=fake.base_url, api_key="sk-test") ...
        assert len(fake.requests) == 2
"""

from __future__ import annotations

import base64
import binascii
import collections
import io
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

# A stalled answer never holds a thread (or server shutdown) longer than this.
MAX_DELAY = 30.0

# The key the fixtures' server expects (any "sk-" text would do; it is not a real key).
FAKE_API_KEY = "sk-fake-test-key"

# Nearest-colour palette. Order breaks ties, so the result is deterministic.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 30, 30)),
    ("orange", (245, 140, 20)),
    ("yellow", (240, 220, 30)),
    ("green", (30, 160, 40)),
    ("blue", (30, 60, 220)),
    ("purple", (130, 40, 160)),
    ("brown", (120, 70, 30)),
    ("white", (245, 245, 245)),
    ("gray", (128, 128, 128)),
    ("black", (10, 10, 10)),
)
# Images no larger than this on either side are "decorative" (a spacer, a divider line).
DECORATIVE_MAX_SIDE = 4


# -- the deterministic "vision model" ----------------------------------------------------


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The nearest palette colour by squared RGB distance."""
    best_name, best_distance = PALETTE[0][0], None
    for name, (r, g, b) in PALETTE:
        distance = (rgb[0] - r) ** 2 + (rgb[1] - g) ** 2 + (rgb[2] - b) ** 2
        if best_distance is None or distance < best_distance:
            best_name, best_distance = name, distance
    return best_name


def _dominant(pixels: Iterable[tuple[int, int, int]]) -> str:
    counts = collections.Counter(colour_name(pixel) for pixel in pixels)
    order = {name: index for index, (name, _) in enumerate(PALETTE)}
    return max(counts, key=lambda name: (counts[name], -order[name]))


def analyse(jpeg_bytes: bytes) -> dict[str, Any]:
    """Facts the fake sees in an image: size, dominant colour, colour of the top quarter."""
    with Image.open(io.BytesIO(jpeg_bytes)) as image:
        image.load()
        rgb = image.convert("RGB")
    width, height = rgb.size
    # Sampling a fixed grid keeps it fast and exactly reproducible for any image size.
    sample = rgb.resize((min(width, 32), min(height, 32)), Image.Resampling.NEAREST)
    sample_width, sample_height = sample.size
    raw = sample.tobytes()  # RGB triplets; stable across Pillow versions, unlike getdata
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    band_rows = max(1, sample_height // 4)
    top = pixels[: band_rows * sample_width]
    return {
        "width": width,
        "height": height,
        "dominant": _dominant(pixels),
        "top": _dominant(top),
    }


def expected_metadata(jpeg_bytes: bytes) -> dict[str, Any]:
    """The exact output the fake answers for this image (as the model's JSON content)."""
    facts = analyse(jpeg_bytes)
    width, height = facts["width"], facts["height"]
    dominant, top = facts["dominant"], facts["top"]
    if width > height:
        shape = "landscape"
    elif height > width:
        shape = "portrait"
    else:
        shape = "square"
    is_decorative = min(width, height) <= DECORATIVE_MAX_SIDE
    keywords = list(dict.fromkeys([dominant, top, shape, "composition"]))
    return {
        # A real model leaves alt text empty for a decorative image (W3C decision tree).
        "alt_text": "" if is_decorative else f"A {dominant} scene with a {top} band at the top",
        "title": f"{dominant.capitalize()} {shape} with {top} top",
        "caption": f"A {shape} {dominant} composition under a {top} band.",
        "description": (
            f"A {shape} picture, mostly {dominant}, whose top quarter is {top}, "
            f"{'wider than it is tall' if width > height else 'as tall as it is wide or taller'}."
        ),
        "keywords": keywords,
        "is_decorative": is_decorative,
        "text_in_image": "",
        "image_type": "photo",
    }


# -- faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for one request.

    kind: "ok" (the normal answer), "status" (an error status), "timeout" (answer only
    after ``delay`` seconds), "broken_json", "off_schema", "refusal", "content" (a 200
    whose message content is ``content``).
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    retry_after_ms: str | None = None
    code: str | None = None
    delay: float = 0.0
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def error(cls, status: int = 500, **kwargs: Any) -> Fault:
        return cls("status", status=status, **kwargs)

    @classmethod
    def rate_limited(
        cls,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        return cls(
            "status",
            status=429,
            code="rate_limit_exceeded",
            retry_after=None if retry_after is None else str(retry_after),
            retry_after_ms=None if retry_after_ms is None else str(retry_after_ms),
            headers=dict(headers or {}),
        )

    @classmethod
    def insufficient_quota(cls) -> Fault:
        return cls("status", status=429, code="insufficient_quota")

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("status", status=401, code="invalid_api_key")

    @classmethod
    def timeout(cls, delay: float = 5.0) -> Fault:
        return cls("timeout", delay=delay)

    @classmethod
    def broken_json(cls) -> Fault:
        return cls("broken_json")

    @classmethod
    def off_schema(cls) -> Fault:
        return cls("off_schema")

    @classmethod
    def refusal(cls) -> Fault:
        return cls("refusal")

    @classmethod
    def with_content(cls, content: Any) -> Fault:
        """A 200 whose content is ``content`` (a dict is sent as JSON, a str verbatim)."""
        return cls("content", content=content)


_NAMED = {
    "ok": Fault.ok,
    "timeout": Fault.timeout,
    "broken_json": Fault.broken_json,
    "off_schema": Fault.off_schema,
    "refusal": Fault.refusal,
    "insufficient_quota": Fault.insufficient_quota,
    "unauthorized": Fault.unauthorized,
}


def as_fault(item: Fault | int | str) -> Fault:
    """A Fault from a Fault, a status code (500, 429, 401...) or a name ("timeout"...)."""
    if isinstance(item, Fault):
        return item
    if isinstance(item, int):
        if item == 429:
            return Fault.rate_limited()
        if item == 401:
            return Fault.unauthorized()
        return Fault.error(item)
    try:
        return _NAMED[item]()
    except KeyError:
        raise ValueError(f"unknown fault {item!r}") from None


# -- what the server saw -----------------------------------------------------------------


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body (None when it was not JSON)
    image: bytes | None  # the decoded bytes of the first image_url data URL
    image_detail: str | None
    status: int = 0  # what the fake answered
    response: dict | None = None  # the JSON answered (None for a timeout that gave up)
    at: float = field(default_factory=time.monotonic)  # when it arrived (monotonic)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def system_prompt(self) -> str:
        for message in self.messages:
            if message.get("role") in {"system", "developer"}:
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return " ".join(part.get("text", "") for part in content or [])
        return ""


def _image_from(body: Any) -> tuple[bytes | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    for message in body.get("messages", []):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image_url = part.get("image_url") or {}
            url = image_url.get("url", "")
            if url.startswith("data:") and ";base64," in url:
                try:
                    data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
                except (binascii.Error, ValueError):
                    return None, image_url.get("detail")
                return data, image_url.get("detail")
    return None, None


# -- the server --------------------------------------------------------------------------


class FakeOpenAI:
    """A threaded HTTP server that answers Chat Completions like OpenAI would.

    ``api_key``: the key it expects (``Authorization: Bearer <key>``), or None to accept
    any non-empty key. ``latency``: seconds added to every answer.

    ``enforce_limit``: answer 429 (at once, with ``retry-after(-ms)``) to a request that
    arrives when ``requests_per_minute`` requests were accepted in the last 60 seconds (a
    sliding window, the strictest reading of "N a minute"), and send
    ``x-ratelimit-remaining/reset-requests`` computed from that window. Off by default:
    the headers then count every request since the last reset, as before.
    ``window_seconds``: the sliding window's length (60 by default); a shorter one lets
    a test reach the steady state of a limit in seconds: it then accepts
    ``requests_per_minute x window_seconds / 60`` requests in any window.
    ``max_in_flight`` is the most requests it was answering at once.
    """

    def __init__(
        self,
        *,
        api_key: str | None = FAKE_API_KEY,
        latency: float = 0.0,
        requests_per_minute: int = 500,
        tokens_per_minute: int = 200_000,
        enforce_limit: bool = False,
        window_seconds: float = 60.0,
    ) -> None:
        self.window_seconds = self._default_window_seconds = window_seconds
        self._default_api_key = api_key
        self._default_enforce_limit = enforce_limit
        self.enforce_limit = enforce_limit
        # Monotonic arrival times of the requests accepted in the last 60 s (enforce_limit).
        self._accepted: collections.deque[float] = collections.deque()
        self.rejected = 0  # 429s answered because of enforce_limit
        self.in_flight = 0
        self.max_in_flight = 0
        self.api_key = api_key
        self.latency = latency
        self.requests_per_minute = self._default_requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.requests: list[ReceivedRequest] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._always: Fault | None = None
        self._lock = threading.Lock()
        # Set on reset and stop, so stalled answers end at once instead of after delay.
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True  # never joined on close: a stalled answer can't block
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # behaviour

    def reset(self) -> None:
        """Forget requests and faults; back to the constructor's key, limit and window,
        and latency 0."""
        with self._lock:
            self.requests = []
            self._faults.clear()
            self._always = None
            self.api_key = self._default_api_key
            self.latency = 0.0
            self.enforce_limit = self._default_enforce_limit
            self.window_seconds = self._default_window_seconds
            self.requests_per_minute = self._default_requests_per_minute
            self._accepted.clear()
            self.rejected = 0
            self.max_in_flight = self.in_flight
            old, self._wake = self._wake, threading.Event()
        old.set()  # release answers still stalled from an earlier test

    def fail_next(self, n: int = 1, status: int = 500, **kwargs: Any) -> None:
        """The next ``n`` requests get ``status`` (429 and 401 shaped like OpenAI's)."""
        fault = as_fault(status) if not kwargs else Fault.error(status, **kwargs)
        with self._lock:
            self._faults.extend([fault] * n)

    def script(self, items: Iterable[Fault | int | str]) -> None:
        """Queue behaviours, one per request, e.g. ``[500, Fault.timeout(2), "ok"]``."""
        faults = [as_fault(item) for item in items]
        with self._lock:
            self._faults.extend(faults)

    def always(self, item: Fault | int | str | None) -> None:
        """Every request gets this behaviour (after queued ones); None clears it."""
        with self._lock:
            self._always = None if item is None else as_fault(item)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            return self._always

    def _record(self, record: ReceivedRequest) -> tuple[int, threading.Event]:
        with self._lock:
            self.requests.append(record)
            return len(self.requests), self._wake

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _window(self, now: float) -> tuple[int, float]:
        """Requests accepted in the window before ``now``, and seconds until the oldest
        leaves the window. Call with the lock held."""
        while self._accepted and self._accepted[0] <= now - self.window_seconds:
            self._accepted.popleft()
        reset = self._accepted[0] + self.window_seconds - now if self._accepted else 0.0
        return len(self._accepted), reset

    def fill_window(self, count: int) -> list[float]:
        """As if ``count`` requests had been accepted evenly over the last window (a job
        that ran before): a test starts in the steady state of the limit. Returns their
        times (monotonic)."""
        with self._lock:
            now = time.monotonic()
            times = [now - self.window_seconds * (count - i) / count for i in range(count)]
            self._accepted.extend(times)
            return times

    @property
    def window_limit(self) -> int:
        """Requests accepted in any window (enforce_limit)."""
        return max(int(self.requests_per_minute * self.window_seconds / 60.0), 1)

    def _admit(self) -> float | None:
        """enforce_limit: None if this request is accepted, else seconds until one would be."""
        with self._lock:
            now = time.monotonic()
            used, reset = self._window(now)
            if used >= self.window_limit:
                self.rejected += 1
                return max(reset, 0.001)
            self._accepted.append(now)
            return None

    # answers

    def _rate_limit_headers(self, seen: int) -> dict[str, str]:
        if self.enforce_limit:
            with self._lock:
                used, reset = self._window(time.monotonic())
            return {
                "x-ratelimit-limit-requests": str(self.window_limit),
                "x-ratelimit-remaining-requests": str(max(self.window_limit - used, 0)),
                "x-ratelimit-reset-requests": f"{int(reset * 1000)}ms",
                "x-ratelimit-limit-tokens": str(self.tokens_per_minute),
                "x-ratelimit-remaining-tokens": str(max(self.tokens_per_minute - 100 * used, 0)),
                "x-ratelimit-reset-tokens": f"{int(reset * 1000)}ms",
            }
        return {
            "x-ratelimit-limit-requests": str(self.requests_per_minute),
            "x-ratelimit-remaining-requests": str(max(self.requests_per_minute - seen, 0)),
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": str(self.tokens_per_minute),
            "x-ratelimit-remaining-tokens": str(max(self.tokens_per_minute - 100 * seen, 0)),
            "x-ratelimit-reset-tokens": "30ms",
        }

    def _completion(self, body: dict, content: str | None, refusal: str | None) -> dict:
        prompt_text = json.dumps(body.get("messages", []))
        # Deterministic "tokens": 85 for a low-detail image plus a crude text count.
        prompt_tokens = 85 + len(prompt_text) // 400
        completion_tokens = max(1, len(content or refusal or "") // 4)
        return {
            "id": f"chatcmpl-fake{int(time.time() * 1000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": refusal,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _error_body(message: str, *, type_: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeOpenAI/1.0"
    # HTTP/1.0: one request per connection, so a client that timed out never gets a late
    # answer on a reused connection.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        pass  # keep test output clean

    @property
    def fake(self) -> FakeOpenAI:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._send(404, _error_body("Not found", type_="invalid_request_error", code=None))

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        image, detail = _image_from(body)
        record = ReceivedRequest(
            path=self.path,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            image=image,
            image_detail=detail,
        )
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._answer(
                record,
                404,
                _error_body("Unknown URL", type_="invalid_request_error", code="unknown_url"),
            )
            return
        seen, wake = self.fake._record(record)
        fake = self.fake
        fake._enter()
        try:
            self._chat_completion(record, body, image, seen, wake)
        finally:
            fake._leave()

    def _chat_completion(
        self,
        record: ReceivedRequest,
        body: Any,
        image: bytes | None,
        seen: int,
        wake: threading.Event,
    ) -> None:
        fake = self.fake
        if fake.enforce_limit:
            wait = fake._admit()
            if wait is not None:
                # Like OpenAI: refused at once, saying when to come back.
                self._answer_status(
                    record,
                    Fault.rate_limited(
                        retry_after=max(1, int(wait + 0.999)),
                        retry_after_ms=int(wait * 1000) + 1,
                    ),
                    fake._rate_limit_headers(seen),
                )
                return
        if fake.latency:
            wake.wait(min(fake.latency, MAX_DELAY))
        rate_headers = fake._rate_limit_headers(seen)

        # Authentication first, like OpenAI: a wrong key never reaches the model.
        auth = record.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if not token or (fake.api_key is not None and token != fake.api_key):
            # OpenAI echoes the key it received; the fake echoes all of it, so tests prove
            # that our error reasons never pass it on.
            self._answer(
                record,
                401,
                _error_body(
                    f"Incorrect API key provided: {token}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    type_="invalid_request_error",
                    code="invalid_api_key",
                ),
            )
            return

        fault = fake._next_fault() or Fault.ok()
        if fault.kind == "timeout":
            # Stall; the client gives up first. Capped and woken by reset/stop.
            wake.wait(min(fault.delay, MAX_DELAY))
            fault = Fault.ok()
        if fault.kind == "status":
            self._answer_status(record, fault, rate_headers)
            return
        if not isinstance(body, dict):
            self._answer(
                record,
                400,
                _error_body("Body is not JSON", type_="invalid_request_error", code=None),
            )
            return
        if image is None:
            self._answer(
                record,
                400,
                _error_body(
                    "No image_url data URL in the request.",
                    type_="invalid_request_error",
                    code="invalid_image",
                ),
            )
            return

        content: str | None
        refusal: str | None = None
        if fault.kind == "broken_json":
            content = '{"alt_text": "A red scene", "title": '
        elif fault.kind == "off_schema":
            content = json.dumps({"alt": "A scene", "tags": "red, blue", "is_decorative": "no"})
        elif fault.kind == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        elif fault.kind == "content":
            content = fault.content if isinstance(fault.content, str) else json.dumps(fault.content)
        else:
            try:
                content = json.dumps(expected_metadata(image))
            except Exception:  # any undecodable image is the client's fault
                self._answer(
                    record,
                    400,
                    _error_body(
                        "The image could not be decoded.",
                        type_="invalid_request_error",
                        code="invalid_image",
                    ),
                )
                return
        self._answer(record, 200, fake._completion(body, content, refusal), rate_headers)

    def _answer_status(self, record: ReceivedRequest, fault: Fault, rate: dict) -> None:
        headers = dict(fault.headers)
        if fault.status == 429:
            headers = {**rate, "x-ratelimit-remaining-requests": "0", **headers}
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = fault.retry_after_ms
        if fault.code == "insufficient_quota":
            body = _error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        elif fault.status == 429:
            body = _error_body(
                "Rate limit reached for requests.", type_="requests", code=fault.code
            )
        elif fault.status == 401:
            body = _error_body(
                "Incorrect API key provided.", type_="invalid_request_error", code=fault.code
            )
        elif fault.status >= 500:
            body = _error_body("The server had an error.", type_="server_error", code=None)
        else:
            body = _error_body(
                f"Fake error {fault.status}.", type_="invalid_request_error", code=fault.code
            )
        self._answer(record, fault.status, body, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(
        self,
        record: ReceivedRequest,
        status: int,
        payload: dict,
        headers: dict[str, str] | None = None,
    ) -> None:
        record.status = status
        record.response = payload
        self._send(status, payload, headers)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_fake_{id(payload):x}")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer
