"""A persistent-session MQTT subscriber that outlives broker restarts (tests' collectors)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt


async def subscribe_forever(port: int, identifier: str, topic: str,
                            on_message: Callable[[aiomqtt.Message], None],
                            on_subscribed: Callable[[], None] = lambda: None) -> None:
    """Subscribe to ``topic`` (QoS 1, persistent session ``identifier``) on a loopback
    broker and hand every message to ``on_message``, reconnecting until cancelled.

    A short keepalive: when a broker stop kills the socket under paho's feet (asyncio logs
    "Bad file descriptor", surfacing as OSError or MqttError), the lost connection is
    noticed in seconds, not after the default 60 s, and the session resumes with the QoS 1
    messages the broker kept for it."""
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier=identifier,
                                      clean_session=False, keepalive=2) as client:
                await client.subscribe(topic, qos=1)
                on_subscribed()
                async for message in client.messages:
                    on_message(message)
        except (aiomqtt.MqttError, OSError):
            await asyncio.sleep(0.1)
