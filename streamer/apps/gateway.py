"""``emotion-stream gateway``: the WebSocket subscriber protocol and the dashboard, fed from
MQTT, so one dashboard sees every call whichever ingest replica (or ``serve`` process)
holds it.

It subscribes (QoS 1) to ``<mqtt.prefix>/+/+/+`` (the events every replica publishes) and
puts each event on its own ``EventBus``; the subscriber server (``streamer.publish.ws_server``) and
the dashboard (``streamer.supervise.dashboard``) serve that bus exactly as in ``serve``, on
``websocket.host``/``websocket.port``. It also follows ``<prefix>/replicas/+``
(``streamer.scale.presence``): when a replica is lost mid-call, it publishes (to MQTT, so
every consumer sees it, and so to its own subscribers) ``stream.ended`` with reason
``error`` for the channels that replica left open (``gateway.end_lost_calls``; on one
gateway only).

Limits: a gateway knows the streams that started while it was subscribed (MQTT events are
not retained); ``bus.replay_events``-style history starts when it connects. Reconnects to
the broker back off like the publisher (``streamer.core.backoff``: ``mqtt.reconnect_min_s`` ..
``reconnect_max_s``, with ``reconnect_jitter``);
events published while it is away are lost to it unless the broker keeps its session
(``mqtt.client_id`` set: a persistent session, QoS 1 messages queued by the broker).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from streamer.core.backoff import Backoff
from streamer.core.config import AppConfig
from streamer.core.events import to_json
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import (
    PUBLISH_TIMEOUT_S,
    event_topic,
    mqtt_tls,
    refused_credentials,
)
from streamer.publish.ws_server import WebSocketServer
from streamer.scale.presence import LostCalls
from streamer.supervise.dashboard import add_dashboard

log = logging.getLogger(__name__)


@dataclass
class GatewayStats:
    received: int = 0  # events taken from MQTT onto the bus
    malformed: int = 0  # messages on event topics that are not JSON objects (logged)
    lost_calls_ended: int = 0  # stream.ended published for channels of lost replicas


class Gateway:
    """MQTT in, WebSocket subscribers and dashboard out; ``run()`` until cancelled."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.bus = EventBus(config.bus.subscriber_queue, config.bus.redact_digit_runs)
        self.lost = LostCalls()
        self.stats = GatewayStats()
        self.connected = asyncio.Event()
        prefix = config.mqtt.prefix
        self.event_filter = f"{prefix}/+/+/+"
        self.presence_filter = f"{prefix}/replicas/+"

    def _client(self) -> aiomqtt.Client:
        c = self.config.mqtt
        return aiomqtt.Client(
            hostname=c.host, port=c.port, identifier=c.client_id, username=c.username,
            password=c.password, keepalive=c.keepalive_s, timeout=PUBLISH_TIMEOUT_S,
            clean_session=c.client_id is None, tls_context=mqtt_tls(c),
            tls_insecure=c.tls_insecure if c.tls else None)

    async def run_mqtt(self) -> None:
        c = self.config.mqtt
        backoff = Backoff(c.reconnect_min_s, c.reconnect_max_s, c.reconnect_jitter)
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.event_filter, qos=1)
                    await client.subscribe(self.presence_filter, qos=1)
                    log.info("gateway: subscribed to %s and %s on %s:%d", self.event_filter,
                             self.presence_filter, self.config.mqtt.host, self.config.mqtt.port)
                    backoff.reset()
                    self.connected.set()
                    async for message in client.messages:
                        await self._on_message(client, message)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if refused_credentials(exc):
                    backoff.saturate()
                wait = backoff.next_s()
                log.warning("gateway: MQTT broker %s:%d %s (%s); retrying in %.1f s", c.host,
                            c.port, "refused the credentials (check mqtt.username and "
                            "mqtt.password)" if refused_credentials(exc) else "unreachable",
                            exc, wait)
                await asyncio.sleep(wait)

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if message.topic.matches(self.presence_filter):
            ended = self.lost.on_presence(payload)
            if ended and self.config.gateway.end_lost_calls:
                for end in ended:
                    await client.publish(event_topic(self.config.mqtt.prefix, end),
                                         to_json(end), qos=1, timeout=PUBLISH_TIMEOUT_S)
                self.stats.lost_calls_ended += len(ended)
                await client.publish(str(message.topic), b"", qos=1, retain=True)  # handled
            return
        try:
            event: Any = json.loads(payload)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.stats.malformed += 1
            log.warning("gateway: ignoring a message on %s that is not a JSON event",
                        message.topic)
            return
        self.lost.on_event(event)
        self.stats.received += 1
        self.bus.publish(event)


async def run_gateway(config: AppConfig, stop: asyncio.Event | None = None,
                      on_ready: Callable[[Gateway, WebSocketServer], Awaitable[None]]
                      | None = None) -> None:
    """Serve subscribers from MQTT until ``stop`` is set (or the task is cancelled)."""
    gateway = Gateway(config)
    stop = stop or asyncio.Event()
    async with WebSocketServer(config.websocket, gateway.bus) as server:
        if config.websocket.dashboard:
            add_dashboard(server)
        async with asyncio.TaskGroup() as tg:
            mqtt = tg.create_task(gateway.run_mqtt(), name="gateway-mqtt")
            await gateway.connected.wait()
            if on_ready is not None:
                await on_ready(gateway, server)
            await stop.wait()
            mqtt.cancel()


__all__ = ["Gateway", "GatewayStats", "run_gateway"]
