"""Webhooks: ``alert``, ``alert.cleared`` and ``alert.ack`` events POSTed as JSON to the
URLs of ``alerts.webhooks``, signed, retried with backoff (docs/alerts.md).

Signature: each POST carries ``X-Emotion-Stream-Timestamp: <unix seconds>`` and
``X-Emotion-Stream-Signature: sha256=<hex>``, the HMAC-SHA256 with ``alerts.webhooks.secret``
of ``<timestamp>.<body>`` (the body's exact bytes). A receiver recomputes it, compares in
constant time and refuses old timestamps (replays). ``sign`` and ``verify`` are the rule.

Delivery: every URL has its own worker and queue, so a dead endpoint delays only its own
events. ``offer`` never blocks. Overflow policy: a URL's queue holds
``alerts.webhooks.queue_size`` events; beyond that its oldest waiting event is dropped and
counted (``dropped``). A failed attempt (connection error, timeout, HTTP 5xx, 408 or 429)
is retried after ``streamer.core.backoff.Backoff`` waits, at most ``max_retries`` times, then
the event is given up (``given_up``, logged); any other 4xx is not retried (``rejected``):
the receiver refused it. Each POST runs on a thread (``urllib``, no extra dependency),
one at a time per URL. An endpoint's state (``ok``, ``failing``) and last error are shown
in ``/readyz`` and ``/metrics``, never in the audio path.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamer.core.backoff import Backoff
from streamer.core.config import WebhooksConfig
from streamer.core.errors import EventEncodingError
from streamer.core.events import Event, to_json
from streamer.core.faults import escaped

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Emotion-Stream-Timestamp"
SIGNATURE_HEADER = "X-Emotion-Stream-Signature"
SENT_TYPES = frozenset({"alert", "alert.cleared", "alert.ack"})
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float,
           max_age_s: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def endpoint_name(url: str) -> str:
    """The URL without user info, query or fragment: for logs, metrics and /readyz (a token
    in the URL stays out of them)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class Attempt:
    """How one POST went: ``status`` None when no response came (``error`` says why)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in RETRIED_STATUSES


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    """One POST (blocking: run it on a thread)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 (http(s) only: config checks the scheme)
            return Attempt(int(answer.status))
    except urllib.error.HTTPError as exc:
        return Attempt(exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Attempt(None, escaped(str(reason), 200))


class Endpoint:
    """One URL: its queue, counters and state."""

    def __init__(self, url: str, config: WebhooksConfig) -> None:
        self.url = url
        self.name = endpoint_name(url)
        self.queue: collections.deque[Event] = collections.deque(maxlen=config.queue_size)
        self.wake = asyncio.Event()
        self.backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.state = "idle"  # idle (nothing sent yet), ok, failing
        self.last_error: str | None = None
        self.failures = 0  # consecutive failed attempts
        self.delivered = 0
        self.attempts_failed = 0
        self.given_up = 0
        self.rejected = 0
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # the deque drops the oldest on append
        self.queue.append(event)
        self.wake.set()

    def details(self) -> dict[str, object]:
        return {"state": self.state, "last_error": self.last_error,
                "consecutive_failures": self.failures, "queued": len(self.queue),
                "delivered": self.delivered, "given_up": self.given_up}


class WebhookSender:
    """The webhooks of one service; ``run()`` until cancelled, ``offer()`` from anywhere on
    the event loop."""

    def __init__(self, config: WebhooksConfig) -> None:
        if config.urls and not config.secret:
            raise ValueError("webhooks need a secret (alerts.webhooks.secret)")
        self.config = config
        self.secret = config.secret or ""
        self.endpoints = [Endpoint(url, config) for url in config.urls]
        self.faults = 0  # events that could not be encoded

    def offer(self, event: Event) -> None:
        if event.get("type") not in SENT_TYPES:
            return
        for endpoint in self.endpoints:
            endpoint.offer(event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for endpoint in self.endpoints:
                tg.create_task(self._deliver(endpoint), name=f"webhook {endpoint.name}")

    def details(self) -> dict[str, dict[str, object]]:
        return {e.name: e.details() for e in self.endpoints}

    async def _deliver(self, endpoint: Endpoint) -> None:
        while True:
            while not endpoint.queue:
                endpoint.wake.clear()
                await endpoint.wake.wait()
            event = endpoint.queue.popleft()
            try:
                body = to_json(event).encode()
            except EventEncodingError as exc:
                self.faults += 1
                log.error("webhook %s: %s", endpoint.name, exc)
                continue
            await self._send(endpoint, event, body)

    async def _send(self, endpoint: Endpoint, event: Event, body: bytes) -> None:
        for attempt_no in range(self.config.max_retries + 1):
            timestamp = str(int(time.time()))  # fresh per attempt: receivers check its age
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: sign(self.secret, timestamp, body),
                       "User-Agent": "emotion-stream-webhooks"}
            attempt = await asyncio.to_thread(post, endpoint.url, body, headers,
                                              self.config.timeout_s)
            if attempt.ok:
                if endpoint.state == "failing":
                    log.info("webhook %s: delivering again", endpoint.name)
                endpoint.state, endpoint.failures, endpoint.last_error = "ok", 0, None
                endpoint.delivered += 1
                endpoint.backoff.reset()
                return
            endpoint.attempts_failed += 1
            endpoint.failures += 1
            endpoint.state = "failing"
            endpoint.last_error = attempt.error or f"HTTP {attempt.status}"
            if not attempt.retry:
                endpoint.rejected += 1
                log.error("webhook %s refused a %s event (%s); not retried", endpoint.name,
                          event.get("type"), endpoint.last_error)
                return
            if attempt_no < self.config.max_retries:
                await asyncio.sleep(endpoint.backoff.next_s())
        endpoint.given_up += 1
        log.error("webhook %s: gave up a %s event after %d attempts (%s); %d queued",
                  endpoint.name, event.get("type"), self.config.max_retries + 1,
                  endpoint.last_error, len(endpoint.queue))


__all__ = ["WebhookSender", "Endpoint", "sign", "verify", "endpoint_name", "post",
           "TIMESTAMP_HEADER", "SIGNATURE_HEADER"]
