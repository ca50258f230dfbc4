"""``emotion-stream run``: one source (file, microphone, stdin) through the runtime.

The source is a ``streamer.core.channel.Channel`` (channels mixed to mono), or a
``streamer.sources.local.SplitSource`` whose input channels are channels of one stream, each
recognised on its own; ``streamer.runtime.Runtime`` wires the bus, recognizer,
workers, publishers and the drain at the end, as for ``serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamer.core.channel import Channel
from streamer.core.config import AppConfig
from streamer.engine.loading import Models
from streamer.engine.policy import PolicyStats
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from streamer.runtime import Runtime
from streamer.sources.local import SplitSource


@dataclass(frozen=True)
class RunSummary:
    utterances: int  # over all channels
    events_published: int
    mqtt_dropped: int
    recognition: PolicyStats  # partials and speculative finals: how often they served
    undelivered: int = 0  # MQTT events lost (the CLI then exits 1)


async def run_pipeline(config: AppConfig, source: Channel | SplitSource, models: Models,
                       on_ready: Callable[[EventBus, WebSocketServer | None], Awaitable[None]]
                       | None = None) -> RunSummary:
    """Run ``source`` through the pipeline to its end and publish every event.

    ``on_ready`` is awaited once the publishers listen and before audio flows (tests and
    embedding applications use it to attach subscribers).
    """
    async with Runtime(config, models) as runtime:
        if on_ready is not None:
            await on_ready(runtime.bus, runtime.server)
        if isinstance(source, SplitSource):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(source.run(), name=f"read:{source.stream_id}")
                tasks = [tg.create_task(runtime.recognizer.run_channel(channel),
                                        name=f"channel:{channel.channel}")
                         for channel in source.channels]
            utterances = sum(task.result() for task in tasks)
        else:
            utterances = await runtime.recognizer.run_channel(source)
    mqtt = runtime.mqtt
    return RunSummary(utterances=utterances, events_published=runtime.bus.published,
                      mqtt_dropped=mqtt.dropped if mqtt else 0,
                      recognition=runtime.recognizer.stats,
                      undelivered=runtime.undelivered)
