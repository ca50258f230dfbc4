"""End to end: espeak-ng speech with known words -> pipeline -> real WebSocket client and
real MQTT subscriber on a Mosquitto broker. Uses the real ASR and the shipped bundle."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from websockets.asyncio.client import connect

from harness.broker import Broker
from harness.mqtt import subscribe_forever
from harness.speech import SAMPLE_TURNS, Turn, conversation, espeak_available, write_wav
from offline_training.metrics import word_error_rate as wer
from streamer.apps.pipeline import run_pipeline
from streamer.core import events
from streamer.core.config import AppConfig, load_config
from streamer.engine.loading import Models, load_models
from streamer.sources.local import FileSource

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")]

TURNS = (
    Turn("Good morning, I am calling about my internet connection.", "en-us+f2"),
    Turn("It has been down for three days and I am very angry.", "en-us+m3", 60, 190, 170),
    Turn("I understand, let me check the line for you.", "en-us+f2"),
)


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(AppConfig())


def make_config(tmp_path: Path, mqtt_port: int | None = None, **extra: str) -> AppConfig:
    overrides = ["source.realtime=false", "websocket.port=0", "stdout.enabled=false",
                 f"jsonl.path={tmp_path / 'events.jsonl'}"]
    if mqtt_port is not None:
        overrides += ["mqtt.enabled=true", f"mqtt.port={mqtt_port}", "mqtt.prefix=e2e",
                      "mqtt.reconnect_min_s=0.2", "mqtt.reconnect_max_s=1.0"]
    overrides += [f"{k.replace('__', '.')}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


class WsRecorder:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.task: asyncio.Task[None] | None = None

    async def attach(self, port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/events")
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"

        async def read() -> None:
            async for raw in ws:
                self.messages.append(json.loads(raw))

        self.task = asyncio.create_task(read())


class MqttRecorder:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, dict]] = []
        self.status: list[str] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        await subscribe_forever(self.port, "e2e-sub", "e2e/#", self.record,
                                self.subscribed.set)

    def record(self, message: aiomqtt.Message) -> None:
        if str(message.topic) == "e2e/status":
            self.status.append(json.loads(message.payload)["state"])
        else:
            self.messages.append((str(message.topic), json.loads(message.payload)))


async def run_with_subscribers(config: AppConfig, models: Models, mqtt: MqttRecorder | None
                               ) -> tuple[list[dict], int]:
    ws = WsRecorder()

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        await ws.attach(server.port)

    mqtt_task = asyncio.create_task(mqtt.run()) if mqtt else None
    if mqtt is not None:
        await asyncio.wait_for(mqtt.subscribed.wait(), 10)
    summary = await run_pipeline(config, FileSource(config.source), models, on_ready=ready)
    await asyncio.sleep(0.3)  # let the last frames reach the clients
    for task in (ws.task, mqtt_task):
        if task is not None:
            task.cancel()
    return ws.messages, summary.utterances


async def test_conversation_reaches_websocket_and_mqtt(tmp_path: Path, models: Models,
                                                       broker: Broker) -> None:
    wav = write_wav(tmp_path / "conv.wav", conversation(TURNS))
    config = make_config(tmp_path, broker.port, source__path=str(wav))
    mqtt = MqttRecorder(broker.port)
    ws_messages, n_utts = await run_with_subscribers(config, models, mqtt)

    for message in ws_messages:
        events.validate_event(message)
    emotions = [m for m in ws_messages if m["type"] == "utterance.emotion"]
    assert len(emotions) == len(TURNS) == n_utts  # one event per utterance
    for turn, event in zip(TURNS, emotions, strict=True):
        assert wer(turn.text, event["text"]) <= 0.35, (turn.text, event["text"])
        assert event["label"] in models.emotion.labels
        assert sum(event["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert event["words"] and event["latency"]["total_ms"] > 0
    assert [m["type"] for m in ws_messages][0] == "stream.started"
    # The supervisor's final call.summary (docs/alerts.md) follows the stream's end.
    assert [m for m in ws_messages if m["type"] != "call.summary"][-1]["type"] == "stream.ended"
    assert ws_messages[-1] == {**ws_messages[-1], "type": "call.summary", "reason": "ended"}

    mqtt_emotions = [(t, e) for t, e in mqtt.messages if e["type"] == "utterance.emotion"]
    assert [e["utterance_id"] for _, e in mqtt_emotions] == [e["utterance_id"] for e in emotions]
    for topic, event in mqtt.messages:
        events.validate_event(event)
        assert topic == f"e2e/default/{event['channel']}/{event['type']}"
        assert event["channel"] == ("call" if event["type"] == "call.summary" else "mono")
    assert "online" in mqtt.status

    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines].count("utterance.emotion") == len(TURNS)


async def test_broker_down_at_start_comes_back(tmp_path: Path, models: Models,
                                               make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker()
    # The subscriber's persistent session exists; then the broker is down when the run starts.
    broker.start()
    mqtt = MqttRecorder(broker.port)
    task = asyncio.create_task(mqtt.run())
    await asyncio.wait_for(mqtt.subscribed.wait(), 10)
    broker.stop()
    mqtt.subscribed.clear()
    wav = write_wav(tmp_path / "conv.wav", conversation(TURNS[:2]))
    config = make_config(tmp_path, broker.port, source__path=str(wav))

    async def restart_broker_later() -> None:
        await asyncio.sleep(2.0)
        broker.start()

    restart = asyncio.create_task(restart_broker_later())
    summary = await run_pipeline(config, FileSource(config.source), models)
    await restart
    async with asyncio.timeout(20):
        while sum(e["type"] == "utterance.emotion" for _, e in mqtt.messages) < 2:
            await asyncio.sleep(0.1)
    task.cancel()
    assert summary.utterances == 2 and summary.mqtt_dropped == 0
    types = [e["type"] for _, e in mqtt.messages]
    assert types.count("stream.started") >= 1 and types.count("stream.ended") >= 1


async def test_silence_only_gives_no_utterances(tmp_path: Path, models: Models) -> None:
    wav = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 5, dtype=np.float32))
    config = make_config(tmp_path, source__path=str(wav))
    messages, n_utts = await run_with_subscribers(config, models, None)
    assert n_utts == 0
    assert [m["type"] for m in messages] == ["stream.started", "stream.ended"]
    assert messages[-1]["utterances"] == 0 and messages[-1]["reason"] == "end_of_input"


async def test_long_monologue_without_pauses_is_split_not_dropped(tmp_path: Path,
                                                                   models: Models) -> None:
    words = ("we keep talking about the plan for the new office and the budget and the people "
             "who will move there next year and what it means for the team ")
    text = (words * 9).strip()
    audio = conversation([Turn(text, speed=175)], gap_s=0.5)
    assert len(audio) / 16000 > 55  # about a minute of speech without a pause
    wav = write_wav(tmp_path / "monologue.wav", audio)
    config = make_config(tmp_path, source__path=str(wav))
    messages, n_utts = await run_with_subscribers(config, models, None)
    emotions = [m for m in messages if m["type"] == "utterance.emotion"]
    assert n_utts == len(emotions) >= 3
    # cut at the short pauses between words once a turn is long, else at the limit
    assert {m["cut_reason"] for m in emotions[:-1]} <= {"pause", "max_length"}
    assert all(m["t_end"] - m["t_start"] <= 15.0 + 1e-6 for m in emotions)
    # Nothing lost: the pieces tile the speech and together carry its words.
    hypothesis = " ".join(m["text"] for m in emotions)
    assert wer(text, hypothesis) <= 0.4


async def test_partials_and_speculation_happen_in_real_time(tmp_path: Path,
                                                             models: Models) -> None:
    """Replayed at real pace, a long turn gets partial transcripts while it is spoken and
    the final transcripts start at the pause (speculation) and are reused."""
    turns = (Turn("I have been waiting on hold for forty minutes and nobody has helped me "
                  "with my broken phone at all.", "en-us+m3"),
             Turn("Thank you, that is all I needed.", "en-us+f2"))
    wav = write_wav(tmp_path / "turns.wav", conversation(turns, gap_s=1.2))
    config = make_config(tmp_path, source__path=str(wav), source__realtime="true")
    ws = WsRecorder()

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        await ws.attach(server.port)

    summary = await run_pipeline(config, FileSource(config.source), models, on_ready=ready)
    await asyncio.sleep(0.3)
    assert ws.task is not None
    ws.task.cancel()
    kinds = [(m["type"], m.get("utterance_id")) for m in ws.messages]
    emotions = [m for m in ws.messages if m["type"] == "utterance.emotion"]
    partials = [m for m in ws.messages if m["type"] == "utterance.partial"]
    assert len(emotions) == summary.utterances == 2
    assert partials and summary.recognition.partials_published == len(partials)
    for partial in partials:  # every partial comes before its utterance's final event
        final = kinds.index(("utterance.emotion", partial["utterance_id"]))
        assert ws.messages.index(partial) < final
    assert summary.recognition.speculations_reused >= 1
    assert wer(turns[0].text, emotions[0]["text"]) <= 0.35


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_truncated_wav_still_gives_events(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "full.wav", conversation(SAMPLE_TURNS[:2]))
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: int(len(data) * 0.6)])  # cut inside the second turn
    result = run_cli("run", "--source", str(cut), "--fast", "--json",
                     "--set", "websocket.enabled=false")
    assert result.returncode == 0, result.stderr
    assert "truncated" in result.stderr
    emotions = [json.loads(line) for line in result.stdout.splitlines()
                if '"utterance.emotion"' in line]
    assert len(emotions) == 2  # the intact turn and the part of the cut one


def test_cli_non_audio_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "report.mp3"
    bogus.write_text("definitely not audio\n" * 100)
    result = run_cli("run", "--source", str(bogus), "--fast")
    assert result.returncode == 2
    assert "cannot decode" in result.stderr and "ffmpeg" in result.stderr
    assert "Traceback" not in result.stderr
