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
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import aiomqtt

from streamer.bus import EventBus
from streamer.config import MqttConfig
from streamer.events import SCHEMA_VERSION, Event, to_json

log = logging.getLogger(__name__)

_UNSAFE_TOPIC_CHARS = re.compile(r"[/+#\s]")
PUBLISH_TIMEOUT_S = 5.0


def topic_part(value: str) -> str:
    """Stream ids and channels become single topic levels: no '/', '+', '#' or spaces."""
    return _UNSAFE_TOPIC_CHARS.sub("_", value) or "_"


def event_topic(prefix: str, event: Event) -> str:
    return "/".join([prefix, topic_part(event["stream_id"]), topic_part(event["channel"]),
                     event["type"]])


def status_payload(state: str) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, "state": state, "wall_time": time.time()})


class MqttPublisher:
    """Forwards bus events to an MQTT broker. ``run()`` loops until cancelled."""

    def __init__(self, config: MqttConfig, bus: EventBus) -> None:
        self.config = config
        self.status_topic = f"{config.prefix}/status"
        self._sub = bus.subscribe("mqtt", maxsize=config.buffer_size)
        self._inflight: Event | None = None  # taken from the buffer, not yet acknowledged
        self.sent = 0
        self.connected = False

    @property
    def dropped(self) -> int:
        """Events lost to buffer overflow."""
        return self._sub.dropped

    @property
    def pending(self) -> int:
        """Events buffered or in flight, not yet acknowledged by the broker."""
        return self._sub.qsize() + (self._inflight is not None)

    def _client(self) -> aiomqtt.Client:
        c = self.config
        return aiomqtt.Client(
            hostname=c.host, port=c.port, identifier=c.client_id, username=c.username,
            password=c.password, keepalive=c.keepalive_s, timeout=PUBLISH_TIMEOUT_S,
            will=aiomqtt.Will(self.status_topic, status_payload("offline"), qos=1, retain=True),
        )

    async def run(self) -> None:
        backoff = self.config.reconnect_min_s
        while True:
            try:
                async with self._client() as client:
                    self.connected = True
                    log.info("MQTT connected to %s:%d", self.config.host, self.config.port)
                    backoff = self.config.reconnect_min_s
                    await client.publish(self.status_topic, status_payload("online"),
                                         qos=1, retain=True)
                    try:
                        await self._forward(client)
                    finally:
                        if self.pending == 0:
                            # Clean shutdown: replace the retained status ourselves.
                            await asyncio.shield(self._say_offline(client))
            except aiomqtt.MqttError as exc:
                self.connected = False
                log.warning(
                    "MQTT broker %s:%d unavailable (%s); %d events buffered, retrying in %.1f s",
                    self.config.host, self.config.port, exc, self.pending, backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max_s)

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
            event = self._inflight
            await client.publish(event_topic(self.config.prefix, event), to_json(event),
                                 qos=self.config.qos, timeout=PUBLISH_TIMEOUT_S)
            self._inflight = None
            self.sent += 1

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every buffered event is acknowledged; False if ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while self.pending > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True
