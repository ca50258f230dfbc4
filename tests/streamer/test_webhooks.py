"""Webhooks against real local HTTP servers: a live receiver that verifies the signature
the way docs/alerts.md tells receivers to (its own HMAC code, not ours), one that fails
twice before it accepts (retried with backoff), one that refuses (4xx: not retried) and a
dead port (given up after the retries, reported failing); offers never block."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from streamer.core.config import WebhooksConfig
from streamer.supervise.webhooks import WebhookSender, endpoint_name, sign, verify
from tests.waiting import wait_until

SECRET = "s3cret-for-tests"


class Receiver:
    """A real HTTP server; answers each POST with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Emotion-Stream-Timestamp"]
                expected = "sha256=" + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body,
                                                hashlib.sha256).hexdigest()
                fresh = abs(time.time() - int(timestamp)) < 300
                if not (fresh and hmac.compare_digest(
                        expected, self.headers["X-Emotion-Stream-Signature"])):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.received.append(json.loads(body))
                    self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def event(kind: str, n: int) -> dict[str, Any]:
    base = {"schema": "emotion-stream/4", "type": kind, "stream_id": "call-1",
            "channel": "customer", "wall_time": 1000.0 + n, "alert_id": f"a/call-1/customer/{n}",
            "rule_id": "a", "severity": "critical"}
    return base


def config(*urls: str, **kw: Any) -> WebhooksConfig:
    return WebhooksConfig(urls=urls, secret=SECRET, timeout_s=2.0,
                          **{"max_retries": 2, "backoff_min_s": 0.05, "backoff_max_s": 0.2,
                             **kw})


def test_signature_round_trip() -> None:
    body = b'{"type":"alert"}'
    signature = sign(SECRET, "1700000000", body)
    assert verify(SECRET, "1700000000", body, signature, now=1700000010)
    assert not verify(SECRET, "1700000000", body + b" ", signature, now=1700000010)
    assert not verify("other-secret", "1700000000", body, signature, now=1700000010)
    assert not verify(SECRET, "1700000000", body, signature, now=1700009999)  # a replay
    assert endpoint_name("https://u:p@hooks.example.com:8443/a?token=x") == \
        "https://hooks.example.com:8443/a"


async def test_live_and_dead_endpoints(receiver: Receiver) -> None:
    dead = dead_url()
    sender = WebhookSender(config(receiver.url, dead))
    task = asyncio.create_task(sender.run())
    try:
        started = time.monotonic()
        for n, kind in enumerate(("alert", "alert.cleared", "alert.ack", "call.summary")):
            sender.offer(event(kind, n))
        assert time.monotonic() - started < 0.05  # offers only queue
        await wait_until(lambda: len(receiver.received) == 3)
        assert [e["type"] for e in receiver.received] == ["alert", "alert.cleared", "alert.ack"]
        assert receiver.bad_signatures == 0
        live, gone = sender.endpoints
        await wait_until(lambda: live.delivered == 3)  # the answer comes after the append
        assert live.state == "ok"
        await wait_until(lambda: gone.given_up == 3)  # 3 events x (1 + 2 retries)
        assert gone.state == "failing" and gone.attempts_failed == 9
        assert gone.last_error is not None and "refused" in gone.last_error.lower()
        details = sender.details()
        assert details[endpoint_name(receiver.url)]["state"] == "ok"
        assert "token" not in json.dumps(details)  # the URL's query stays out of reports
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_retries_until_accepted_and_4xx_is_not_retried() -> None:
    flaky = Receiver(statuses=(503, 503))
    refusing = Receiver(statuses=(400,))
    sender = WebhookSender(config(flaky.url, refusing.url))
    task = asyncio.create_task(sender.run())
    try:
        sender.offer(event("alert", 1))
        first, second = sender.endpoints
        await wait_until(lambda: first.delivered == 1)
        assert len(flaky.received) == 1
        assert first.attempts_failed == 2 and first.state == "ok"
        await wait_until(lambda: second.rejected == 1)
        assert second.attempts_failed == 1 and refusing.received == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        flaky.close()
        refusing.close()


async def test_a_full_queue_drops_the_oldest() -> None:
    sender = WebhookSender(config(dead_url(), queue_size=2))  # not running: nothing drains
    for n in range(5):
        sender.offer(event("alert", n))
    endpoint = sender.endpoints[0]
    assert endpoint.dropped == 3
    assert [e["alert_id"] for e in endpoint.queue] == ["a/call-1/customer/3",
                                                       "a/call-1/customer/4"]


@pytest.mark.parametrize("overrides, problem", [
    (["alerts.webhooks.urls=[http://127.0.0.1:9/x]"], "alerts.webhooks.secret is missing"),
    (["alerts.webhooks.urls=[http://127.0.0.1:9/x]", "alerts.webhooks.secret=short"],
     "'alerts.webhooks.secret' is 5 characters long; use at least 8"),
    (["alerts.webhooks.secret=' '"], "'alerts.webhooks.secret' is empty or blank"),
    (["alerts.webhooks.urls=[ftp://x/y]", f"alerts.webhooks.secret={SECRET}"],
     r"alerts.webhooks.urls\[0\] = 'ftp://x/y' is not an http:// or https:// URL"),
    (["alerts.webhooks.max_retries=-1"], "alerts.webhooks.max_retries must be 0..100"),
    (["alerts.webhooks.backoff_min_s=0"], "alerts.webhooks.backoff_min_s must be > 0"),
    (["alerts.retention_days=0"], "alerts.retention_days must be > 0"),
])
def test_webhook_config_errors(overrides: list[str], problem: str) -> None:
    from streamer.core.config import load_config
    from streamer.core.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        load_config(overrides=overrides)


def test_webhook_secret_from_the_environment_and_hidden(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from streamer.core.config import load_config, redacted

    monkeypatch.setenv("HOOK_SECRET", SECRET)
    config = load_config(overrides=["alerts.webhooks.urls=[https://hooks.example.com/a]",
                                    "alerts.webhooks.secret=env:HOOK_SECRET"])
    assert config.alerts.webhooks.secret == SECRET
    assert config.alerts.webhooks.urls == ("https://hooks.example.com/a",)
    assert redacted(config)["alerts"]["webhooks"]["secret"] == "***"
