"""Which ingest replica holds which calls, on MQTT, so a lost replica's calls can be ended.

A replica killed mid-call (node lost, OOM, ``ray.kill``) cannot publish the calls'
``stream.ended``. So every ingest replica keeps a retained message on
``<prefix>/replicas/<replica>``: ``{"state": "online", "calls": {stream: [channels]}}``,
republished when its calls change, with a retained last will ``{"state": "offline"}``
that the broker publishes when the replica's connection drops without a goodbye. A clean
stop deletes the retained message instead (empty payload).

``LostCalls`` (sans-I/O) is the consumer side, run by the gateway: it follows the presence
messages and the events, and when a replica goes offline it returns one ``stream.ended``
(reason ``error``) for each channel of that replica's calls that had not ended, with the
duration and utterance count seen so far.

Overflow policy: nothing queues here; ``ReplicaPresence`` publishes the latest state only
(a state superseded while the broker is away is never sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from streamer.core.backoff import Backoff
from streamer.core.config import MqttConfig
from streamer.core.events import SCHEMA_VERSION, Event, stream_ended
from streamer.publish.mqtt_publisher import (
    PUBLISH_TIMEOUT_S,
    mqtt_tls,
    refused_credentials,
    topic_part,
)

log = logging.getLogger(__name__)

CHECK_S = 0.2  # how often a replica compares its calls with what it last published
Calls = dict[str, list[str]]  # stream id -> channels


def presence_topic(prefix: str, replica: str) -> str:
    return f"{prefix}/replicas/{topic_part(replica)}"


def presence_payload(replica: str, state: str, calls: Calls | None = None) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, "state": state, "replica": replica,
                       "calls": calls or {}, "wall_time": time.time()})


class ReplicaPresence:
    """Publishes one replica's calls (retained, QoS 1) until cancelled; see module doc."""

    def __init__(self, config: MqttConfig, replica: str, calls: Callable[[], Calls]) -> None:
        self.config = config
        self.replica = replica
        self.topic = presence_topic(config.prefix, replica)
        self._calls = calls
        self.published = 0

    def _client(self) -> aiomqtt.Client:
        c = self.config
        tls = mqtt_tls(c)
        return aiomqtt.Client(
            hostname=c.host, port=c.port, username=c.username, password=c.password,
            keepalive=c.keepalive_s, timeout=PUBLISH_TIMEOUT_S,
            will=aiomqtt.Will(self.topic, presence_payload(self.replica, "offline"), qos=1,
                              retain=True),
            tls_context=tls, tls_insecure=c.tls_insecure if c.tls else None)

    async def run(self) -> None:
        c = self.config
        backoff = Backoff(c.reconnect_min_s, c.reconnect_max_s, c.reconnect_jitter)
        while True:
            try:
                async with self._client() as client:
                    backoff.reset()
                    try:
                        await self._follow(client)
                    finally:  # a clean stop: nothing to end for anyone
                        await asyncio.shield(self._clear(client))
            except aiomqtt.MqttError as exc:
                if refused_credentials(exc):
                    backoff.saturate()
                wait = backoff.next_s()
                log.warning("presence of replica %s: MQTT broker %s:%d %s (%s); retrying in "
                            "%.1f s", self.replica, c.host, c.port,
                            "refused the credentials" if refused_credentials(exc)
                            else "unreachable", exc, wait)
                await asyncio.sleep(wait)

    async def _follow(self, client: aiomqtt.Client) -> None:
        last: Calls | None = None
        while True:
            calls = self._calls()
            if calls != last:
                await client.publish(self.topic, presence_payload(self.replica, "online", calls),
                                     qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S)
                self.published += 1
                last = calls
            await asyncio.sleep(CHECK_S)

    async def _clear(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topic, b"", qos=1, retain=True, timeout=2.0)
        except aiomqtt.MqttError as exc:
            log.warning("presence of replica %s: could not clear %s: %s", self.replica,
                        self.topic, exc)


@dataclass
class _Channel:
    utterances: int = 0
    nonspeech: int = 0
    t_end: float = 0.0


@dataclass
class LostCalls:
    """Follows presence and events; says which channels a lost replica leaves open."""

    replicas: dict[str, Calls] = field(default_factory=dict)
    open: dict[tuple[str, str], _Channel] = field(default_factory=dict)
    lost_replicas: int = 0

    def on_event(self, event: Event) -> None:
        key = (str(event.get("stream_id")), str(event.get("channel")))
        kind = event.get("type")
        if kind == "stream.started":
            self.open[key] = _Channel()
        elif kind == "stream.ended":
            self.open.pop(key, None)
        elif kind == "utterance.emotion" and key in self.open:
            channel = self.open[key]
            channel.utterances += 1
            channel.nonspeech += 0 if event.get("speech", True) else 1
            channel.t_end = max(channel.t_end, float(event.get("t_end") or 0.0))

    def on_presence(self, payload: bytes) -> list[Event]:
        """A presence message; the ``stream.ended`` events to publish (replica lost)."""
        if not payload:  # deleted: the replica stopped cleanly
            return []
        try:
            message: Any = json.loads(payload)
        except ValueError as exc:
            log.warning("presence: ignoring a message that is not JSON (%s)", exc)
            return []
        if not isinstance(message, dict) or not isinstance(message.get("replica"), str):
            log.warning("presence: ignoring a message without a replica name")
            return []
        replica = message["replica"]
        if message.get("state") == "online":
            calls = message.get("calls")
            self.replicas[replica] = calls if isinstance(calls, dict) else {}
            return []
        held = self.replicas.pop(replica, {})
        self.lost_replicas += 1
        ended = []
        for stream_id, channels in held.items():
            for ch in channels if isinstance(channels, list) else []:
                channel = self.open.get((stream_id, ch))
                if channel is None:
                    continue  # ended before the replica was lost
                ended.append(stream_ended(
                    stream_id, ch, channel.t_end, channel.utterances, "error",
                    f"ingest replica {replica} was lost mid-call (its MQTT connection "
                    "dropped); the call's connection was closed (1012) and is not recognized "
                    "further", channel.nonspeech))
        if held:
            log.error("ingest replica %s lost with %d calls; ended %d channels", replica,
                      len(held), len(ended))
        return ended


__all__ = ["LostCalls", "ReplicaPresence", "presence_payload", "presence_topic"]
