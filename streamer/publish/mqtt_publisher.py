"""MQTT publisher (aiomqtt): QoS 1 events, retained status with a last will, reconnects.

Topics: ``<prefix>/<stream_id>/<channel>/<event type>`` (for example
``emotion/call-42/customer/utterance.emotion``) and a retained
``<prefix>/status`` holding ``{"state": "online" | "offline", ...}``; the
broker publishes the ``offline`` last will if the streamer dies.

Delivery: at least once. Events wait in the bus subscription queue (size
``mqtt.buffer_size``); the event being sent leaves the buffer only once the
broker has acknowledged it (PUBACK), so a broker restart loses nothing as
long as fewer than ``buffer_size`` events pile up meanwhile. Overflow policy:
beyond that the oldest events are dropped and counted (``dropped``), with a
warning. Reconnects back off exponentially from ``reconnect_min_s`` to
``reconnect_max_s``.

Poison events: an event that cannot be sent (not encodable as JSON, a topic or payload
the client library refuses) or that the broker rejects (the connection drops while it is
in flight, ``mqtt.max_attempts`` times in a row, e.g. a packet over the broker's
``max_packet_size``) is set aside as dead-letter: logged with its stream id and the
reason, counted (``dead_lettered``), kept in ``dead_letters`` (the latest
``DEAD_LETTERS_KEPT``) and appended to ``mqtt.dead_letter_path`` if set; the publisher
goes on with the next event instead of retrying one event forever.

Credentials: a broker that refuses the username/password (a CONNACK "bad user name or
password" / "not authorized") is reported as an authentication error (``state``
"auth_refused"); only a CONNACK says so: a broker that is down, restarting or drops the
connection is "unreachable" (paho's "no connection" error is code 4 too, which is why the
CONNACK is told apart by its exception type, not its number). ``/readyz`` and the next
``online`` status say which it was. Retries back off exponentially with jitter
(``streamer.core.backoff``: ``reconnect_min_s`` doubling to ``reconnect_max_s``, times a factor
in [1 - ``reconnect_jitter``, 1]); refused credentials wait ``reconnect_max_s``.
``undelivered`` says how many events never reached the broker (the CLI exits non-zero
when it is not 0 at shutdown).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from streamer.core.backoff import Backoff
from streamer.core.config import MqttConfig
from streamer.core.errors import PublisherError
from streamer.core.events import SCHEMA_VERSION, Event, describe, to_json
from streamer.core.faults import escaped
from streamer.publish.bus import EventBus
from streamer.publish.sinks import open_private

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
DEAD_LETTERS_KEPT = 1000
# CONNACK codes for refused credentials: MQTT 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87).
AUTH_REFUSED = frozenset({4, 5, 0x86, 0x87})
# Connection states (``MqttPublisher.state``, /readyz, the ``online`` status after an outage).
CONNECTING, CONNECTED, UNREACHABLE, AUTH_REFUSED_STATE = (
    "connecting", "connected", "unreachable", "auth_refused")


def topic_part(value: object) -> str:
    """Stream ids and channels become single topic levels, escaped reversibly (so two ids
    never share a topic): '%', '/', '+', '#', spaces, controls (a NUL makes the broker drop
    the connection) and unencodable characters become %XX of their UTF-8 bytes, as in
    URLs ("q a" -> "q%20a", "q_a" stays); the empty string becomes "%"."""
    text = value if isinstance(value, str) else str(value)
    if not text:
        return "%"
    return "".join(c if c.isprintable() and not c.isspace() and c not in "%/+#"
                   else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in text)


def event_topic(prefix: str, event: Event) -> str:
    return "/".join([prefix, topic_part(event.get("stream_id")),
                     topic_part(event.get("channel")), topic_part(event.get("type"))])


def status_payload(state: str, wall_time: float | None = None,
                   after: dict[str, str] | None = None) -> str:
    """The retained status; ``after``: why the previous connection attempts failed."""
    body: dict[str, Any] = {"schema": SCHEMA_VERSION, "state": state,
                            "wall_time": time.time() if wall_time is None else wall_time}
    if after:
        body["after"] = after
    return json.dumps(body)


@dataclass(frozen=True)
class DeadLetter:
    """An event the publisher gave up on, and why."""

    topic: str
    reason: str
    event: Event
    wall_time: float

    def as_json(self) -> str:
        """A JSONL record; the event is made JSON-safe (NaN as null, text escaped)."""
        return json.dumps({"topic": self.topic, "reason": self.reason,
                           "wall_time": self.wall_time, "event": _json_safe(self.event)},
                          ensure_ascii=True, allow_nan=False, default=repr)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def mqtt_tls(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for the broker connection (None: plain TCP); a PublisherError says
    what is wrong with the CA or client certificate files."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=config.tls_ca_file)
        if config.tls_cert_file:
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise PublisherError(
            f"cannot set up MQTT TLS (mqtt.tls_ca_file={config.tls_ca_file}, "
            f"tls_cert_file={config.tls_cert_file}, tls_key_file={config.tls_key_file}): "
            f"{exc}; give PEM files") from exc
    if config.tls_insecure:
        context.check_hostname = False
    return context


def refused_credentials(exc: aiomqtt.MqttError) -> bool:
    """True when the broker answered CONNACK with "bad user name or password"/"not
    authorized". Only ``MqttConnectError`` carries a CONNACK code: other errors carry
    paho's client codes, where 4 is "no connection" (a broker that is down)."""
    if not isinstance(exc, MqttConnectError):
        return False
    value = getattr(exc.rc, "value", exc.rc)
    return isinstance(value, int) and value in AUTH_REFUSED


class MqttPublisher:
    """Forwards bus events to an MQTT broker. ``run()`` loops until cancelled."""

    def __init__(self, config: MqttConfig, bus: EventBus) -> None:
        self.config = config
        self.status_topic = f"{config.prefix}/status"
        self._sub = bus.subscribe("mqtt", maxsize=config.buffer_size)
        self._inflight: Event | None = None  # taken from the buffer, not yet acknowledged
        self._attempts = 0  # failed publishes of the in-flight event on a live connection
        self._publishing = False
        self.sent = 0
        self.connected = False
        self.auth_failed = False
        self.state = CONNECTING
        self.last_error: str | None = None
        self.backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s,
                               config.reconnect_jitter)
        self.dead_lettered = 0
        self.dead_letters: collections.deque[DeadLetter] = collections.deque(
            maxlen=DEAD_LETTERS_KEPT)
        self._tls = mqtt_tls(config)

    @property
    def dropped(self) -> int:
        """Events lost to buffer overflow."""
        return self._sub.dropped

    @property
    def pending(self) -> int:
        """Events buffered or in flight, not yet acknowledged by the broker."""
        return self._sub.qsize() + (self._inflight is not None)

    @property
    def undelivered(self) -> int:
        """Events that did not (or not yet) reach the broker: pending, dropped, dead."""
        return self.pending + self.dropped + self.dead_lettered

    def _client(self, now: float) -> aiomqtt.Client:
        c = self.config
        # The will carries the connection time, the same as the 'online' status after it.
        return aiomqtt.Client(
            hostname=c.host, port=c.port, identifier=c.client_id, username=c.username,
            password=c.password, keepalive=c.keepalive_s, timeout=PUBLISH_TIMEOUT_S,
            will=aiomqtt.Will(self.status_topic, status_payload("offline", now), qos=1,
                              retain=True),
            tls_context=self._tls, tls_insecure=c.tls_insecure if c.tls else None,
        )

    async def run(self) -> None:
        after: dict[str, str] | None = None  # the failure before this connection
        while True:
            try:
                now = time.time()
                async with self._client(now) as client:
                    self.connected = True
                    if self.auth_failed:
                        log.info("MQTT broker %s:%d accepts the credentials now",
                                 self.config.host, self.config.port)
                    self.auth_failed = False
                    self.state = CONNECTED
                    log.info("MQTT connected to %s:%d", self.config.host, self.config.port)
                    self.backoff.reset()
                    await client.publish(self.status_topic,
                                         status_payload("online", now, after),
                                         qos=1, retain=True)
                    after = None
                    try:
                        await self._forward(client)
                    finally:
                        if self.pending == 0:
                            # Clean shutdown: replace the retained status ourselves.
                            await asyncio.shield(self._say_offline(client))
            except aiomqtt.MqttError as exc:
                self.connected = False
                if refused_credentials(exc):
                    self.backoff.saturate()  # retrying soon will not fix a password
                    wait = self.backoff.next_s()
                    if not self.auth_failed:
                        log.error(
                            "MQTT broker %s:%d refused the credentials (%s): authentication "
                            "error; check mqtt.username and mqtt.password. %d events buffered; "
                            "retrying about every %.0f s", self.config.host, self.config.port,
                            exc, self.pending, self.config.reconnect_max_s)
                    self.auth_failed = True
                    self.state = AUTH_REFUSED_STATE
                    self.last_error = f"authentication refused by the broker ({exc})"
                else:
                    self._count_failed_attempt(exc)
                    wait = self.backoff.next_s()
                    self.auth_failed = False
                    self.state = UNREACHABLE
                    self.last_error = f"broker unreachable ({exc})"
                    log.warning(
                        "MQTT broker %s:%d unreachable (%s): not an authentication error; "
                        "%d events buffered, retrying in %.1f s", self.config.host,
                        self.config.port, exc, self.pending, wait)
                after = {"state": self.state, "error": self.last_error}
                await asyncio.sleep(wait)

    def _count_failed_attempt(self, exc: aiomqtt.MqttError) -> None:
        """The connection failed while the in-flight event was being published."""
        if not self._publishing or self._inflight is None:
            return
        self._publishing = False
        self._attempts += 1
        if self._attempts >= self.config.max_attempts:
            self._dead_letter(f"the broker dropped the connection on it {self._attempts} "
                              f"times in a row (last: {exc}); a packet over the broker's "
                              "max_packet_size or a topic it refuses")

    def _dead_letter(self, reason: str) -> None:
        event, self._inflight, self._attempts = self._inflight, None, 0
        assert event is not None
        letter = DeadLetter(event_topic(self.config.prefix, event), reason, event, time.time())
        self.dead_letters.append(letter)
        self.dead_lettered += 1
        log.error("MQTT: set aside the %s as dead-letter (%d so far): %s", describe(event),
                  self.dead_lettered, escaped(reason))
        if self.config.dead_letter_path:
            try:
                with open_private(Path(self.config.dead_letter_path)) as out:  # 0600
                    out.write(letter.as_json() + "\n")
            except OSError as exc:
                log.error("MQTT: cannot append to mqtt.dead_letter_path %s: %s",
                          self.config.dead_letter_path, exc)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.status_topic, status_payload("offline"), qos=1,
                                 retain=True, timeout=2.0)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish MQTT offline status: %s", exc)

    async def _forward(self, client: aiomqtt.Client) -> None:
        while True:
            if self._inflight is None:
                self._inflight = await self._sub.get()
                self._attempts = 0
            event = self._inflight
            try:
                topic, payload = event_topic(self.config.prefix, event), to_json(event)
                self._publishing = True
                await client.publish(topic, payload, qos=self.config.qos,
                                     timeout=PUBLISH_TIMEOUT_S)
            except (ValueError, TypeError) as exc:  # unencodable, or refused by the library
                self._publishing = False
                self._dead_letter(f"cannot be published ({type(exc).__name__}: {exc})")
                continue
            self._publishing = False
            self._inflight = None
            self._attempts = 0
            self.sent += 1

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every buffered event is acknowledged; False if ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while self.pending > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True
