"""A persistent-session MQTT subscriber that outlives broker restarts (tests' collectors)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiomqtt

log = logging.getLogger(__name__)


async def subscribe_forever(port: int, identifier: str, topic: str,
                            on_message: Callable[[aiomqtt.Message], None],
                            on_subscribed: Callable[[], None] = lambda: None) -> None:
    """Subscribe to ``topic`` (QoS 1, persistent session ``identifier``) on a loopback
    broker and hand every message to ``on_message``, reconnecting until cancelled.

    A short keepalive: when a broker stop kills the socket under paho's feet (asyncio logs
    "Bad file descriptor", surfacing as OSError or MqttError), the lost connection is
    noticed in seconds, not after the default 60 s, and the session resumes with the QoS 1
    messages the broker kept for it. Any other error of a dying connection (paho's socket
    closed under asyncio's reader, e.g. a ValueError for descriptor -1) is logged and
    retried too: a collector that silently stopped would look like a lost message."""
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
        except Exception:  # noqa: BLE001 - logged; the subscriber must outlive the broker
            log.warning("MQTT subscriber %s: connection failed unexpectedly; reconnecting",
                        identifier, exc_info=True)
            await asyncio.sleep(0.1)
