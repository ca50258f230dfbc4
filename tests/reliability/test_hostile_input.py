"""Issue 13, rows 1, 2, 5, 6, 7: hostile clients against the real ingest and subscriber
servers, with real websockets clients on loopback.

The recognizer is the recording stand-in of tests/ingest/test_server.py behind the same
``run_channel`` seam (the thing under test is the edge, not recognition); the bus, the
sinks and the subscriber server are the real ones.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import stat
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamer.core import events
from streamer.core.config import WebSocketConfig
from streamer.core.errors import EventEncodingError
from streamer.ingest.clients import send_audiohook, send_pcm, send_twilio
from streamer.publish.bus import EventBus
from streamer.publish.sinks import JsonlSink, StdoutSink
from streamer.publish.ws_server import WebSocketServer
from tests.ingest.test_server import (
    Recorded,
    RecordingRecognizer,
    make_config,
    started,
    tone_call,
    wait_for,
)
from tests.streamer.test_bus_and_events import sample_emotion

TWILIO = {"auth_token": "tw-secret", "signed_url": "wss://calls.example.com/ingest/twilio"}
TIMEOUT_S = 20.0


async def pcm_start_reply(base: str, start: dict) -> tuple[dict, int | None, str]:
    """Send a raw-PCM start message; return the server's answer and the close code."""
    async with connect(f"{base}/ingest/pcm?token=pcm-secret", open_timeout=TIMEOUT_S) as ws:
        # json.dumps writes a lone surrogate as the escape \ud800, as a hostile client would
        await ws.send(json.dumps(start))
        answer = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
        return answer, ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize("roles", [["\ud800"], ["a\u0000b"], ["\u202eevil"], ["x" * 129]])
async def test_hostile_roles_close_that_call_only(roles: list[str]) -> None:
    """Rows 1 and 2: a lone surrogate or a NUL in a role closes that call with 1007."""
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        good = asyncio.create_task(send_twilio(f"{base}/ingest/twilio",
                                               tone_call("CA-good", 1.0), pace=4, **TWILIO))
        answer, code, reason = await pcm_start_reply(
            base, {"type": "start", "stream_id": "hostile", "channels": 1, "roles": roles})
        report = await asyncio.wait_for(good, TIMEOUT_S)
        await wait_for(lambda: rec.channels.get(("twilio:CA-good", "agent"), Recorded("")).done)
    finally:
        await server.__aexit__()
    assert answer["type"] == "error" and "role" in answer["message"]
    assert code == 1007 and "role" in reason
    assert report.close_code == 1000
    assert ("hostile", roles[0]) not in rec.channels
    assert server.stats.protocol_failures == 1 and server.stats.call_errors == 0


@pytest.mark.parametrize("stream_id", ["\ud800", "a\x00b", "call\n2", "", "a/b"])
async def test_hostile_stream_ids_are_refused_on_every_protocol(stream_id: str) -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(twilio_auth_token=None), rec)
    try:
        answer, code, _ = await pcm_start_reply(base, {"type": "start", "stream_id": stream_id})
        async with connect(f"{base}/ingest/twilio", open_timeout=TIMEOUT_S) as ws:
            # (an empty callSid falls back to the streamSid, as Twilio's own ids do)
            await ws.send(json.dumps({"event": "start", "start": {
                "streamSid": stream_id or "MZ\x00", "callSid": stream_id,
                "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw",
                                                       "sampleRate": 8000, "channels": 1}}}))
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
            twilio_code = ws.close_code
    finally:
        await server.__aexit__()
    assert answer["type"] == "error" and code == 1007
    assert twilio_code == 1007
    assert rec.channels == {}


async def test_binary_frame_on_twilio_closes_1003_and_deep_json_1007() -> None:
    """Row 7: a binary frame on /ingest/twilio, JSON nested 30,000 deep on each route."""
    rec = RecordingRecognizer()
    server, base = await started(make_config(twilio_auth_token=None), rec)
    deep = "[" * 30_000 + "]" * 30_000
    codes = {}
    try:
        async with connect(f"{base}/ingest/twilio", open_timeout=TIMEOUT_S) as ws:
            await ws.send(b"\x00\x01")
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
            codes["twilio binary"] = (ws.close_code, ws.close_reason)
        for route, headers in (("/ingest/pcm", {"Authorization": "Bearer pcm-secret"}),
                               ("/ingest/twilio", {}),
                               ("/ingest/audiohook", {"X-API-KEY": "ah-key"})):
            async with connect(f"{base}{route}", additional_headers=headers,
                               open_timeout=TIMEOUT_S) as ws:
                await ws.send(deep)
                await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
                codes[route] = (ws.close_code, ws.close_reason)
    finally:
        await server.__aexit__()
    assert codes["twilio binary"] == (1003, "twilio takes no binary messages")
    for route in ("/ingest/pcm", "/ingest/twilio", "/ingest/audiohook"):
        assert codes[route][0] == 1007 and "nested too deeply" in codes[route][1], route
    assert server.stats.call_errors == 0


async def test_one_malformed_call_among_three_good_ones_changes_nothing() -> None:
    """The good calls' audio is sample-identical to the same calls sent alone."""

    async def three_good(base: str, tag: str) -> None:
        await asyncio.gather(
            send_twilio(f"{base}/ingest/twilio", tone_call(f"tw-{tag}", 1.5), pace=4,
                        **TWILIO),
            send_audiohook(f"{base}/ingest/audiohook", tone_call(f"ah-{tag}", 1.5), pace=4,
                           api_key="ah-key"),
            send_pcm(f"{base}/ingest/pcm", tone_call(f"pcm-{tag}", 1.5), pace=4,
                     token="pcm-secret"))

    alone, mixed = RecordingRecognizer(), RecordingRecognizer()
    server, base = await started(make_config(), alone)
    try:
        await asyncio.wait_for(three_good(base, "x"), 60)
        await wait_for(lambda: len(alone.channels) == 6
                       and all(r.done for r in alone.channels.values()))
    finally:
        await server.__aexit__()
    server, base = await started(make_config(), mixed)
    try:
        bad = pcm_start_reply(base, {"type": "start", "stream_id": "evil\ud800",
                                     "roles": ["\x00"]})
        _, (_, code, _) = await asyncio.wait_for(asyncio.gather(three_good(base, "x"), bad), 60)
        await wait_for(lambda: len(mixed.channels) == 6
                       and all(r.done for r in mixed.channels.values()))
    finally:
        await server.__aexit__()
    assert code == 1007
    assert set(alone.channels) == set(mixed.channels)
    for key in alone.channels:
        a, b = alone.audio(*key), mixed.audio(*key)
        assert a.shape == b.shape and (a == b).all(), key


def test_twilio_dtmf_hash_and_marks_are_text_not_identifiers() -> None:
    """'#' is a DTMF digit and mark names are the application's: free text, not ids."""
    from streamer.ingest.protocol import Failure, Limits
    from streamer.ingest.twilio import TwilioProtocol

    p = TwilioProtocol(Limits())
    p.receive_text(json.dumps({"event": "start", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    p.receive_text(json.dumps({"event": "dtmf", "dtmf": {"digit": "#"}}))
    p.receive_text(json.dumps({"event": "mark", "mark": {"name": "greeting/1 done"}}))
    assert not any(isinstance(e, Failure) for e in p.poll())
    assert p.dtmf == ["#"] and p.marks == ["greeting/1 done"]
    p.receive_text(json.dumps({"event": "mark", "mark": {"name": "a\x00b"}}))
    assert [e.close_code for e in p.poll() if isinstance(e, Failure)] == [1007]


# ------------------------------------------------------------- row 5: limits
async def test_one_protocol_cannot_take_every_slot() -> None:
    """Row 5: idle PCM sockets fill ingest.max_pcm_calls, Twilio and AudioHook still get in;
    the refusal names the limit."""
    rec = RecordingRecognizer()
    server, base = await started(make_config(max_calls=4, max_pcm_calls=2), rec)
    try:
        url = f"{base}/ingest/pcm?token=pcm-secret"
        async with connect(url) as _a, connect(url) as _b:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            twilio = await asyncio.wait_for(send_twilio(
                f"{base}/ingest/twilio", tone_call("CA-ok", 0.5), pace=10, **TWILIO), 30)
            audiohook = await asyncio.wait_for(send_audiohook(
                f"{base}/ingest/audiohook", tone_call("AH-ok", 0.5), pace=10,
                api_key="ah-key"), 30)
    finally:
        await server.__aexit__()
    assert refused.value.response.status_code == 503
    assert b"ingest.max_pcm_calls" in refused.value.response.body
    assert twilio.close_code == 1000 and audiohook.close_code in (1000, None)
    assert ("twilio:CA-ok", "customer") in rec.channels
    assert ("audiohook:AH-ok", "customer") in rec.channels


async def test_per_address_and_handshake_rate_limits() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(max_calls_per_address=1), rec)
    try:
        url = f"{base}/ingest/pcm?token=pcm-secret"
        async with connect(url):
            with pytest.raises(InvalidStatus) as busy:
                async with connect(f"{base}/ingest/audiohook",
                                   additional_headers={"X-API-KEY": "ah-key"}):
                    pass
    finally:
        await server.__aexit__()
    assert busy.value.response.status_code == 503
    assert b"ingest.max_calls_per_address" in busy.value.response.body
    server, base = await started(make_config(handshakes_per_minute_per_address=3), rec)
    statuses, body = [], b""
    try:
        for _ in range(5):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{base}/ingest/pcm?token=wrong"):
                    pass
            statuses.append(refused.value.response.status_code)
            body = refused.value.response.body
    finally:
        await server.__aexit__()
    assert statuses == [401, 401, 401, 429, 429]
    assert b"ingest.handshakes_per_minute_per_address" in body
    assert server.stats.refused_rate == 2


async def test_subscriber_cap_and_bad_filters_are_refused() -> None:
    bus = EventBus()
    async with WebSocketServer(WebSocketConfig(port=0, max_subscribers=1), bus) as server:
        base = f"ws://127.0.0.1:{server.port}/events"
        with pytest.raises(InvalidStatus) as bad:
            async with connect(f"{base}?streams=a%00b"):
                pass
        async with connect(base) as first:
            assert json.loads(await first.recv())["type"] == "hello"
            with pytest.raises(InvalidStatus) as full:
                async with connect(base):
                    pass
            await first.send("[" * 30_000 + "]" * 30_000)  # row 7 on /events
            error = json.loads(await asyncio.wait_for(first.recv(), TIMEOUT_S))
            await first.send(json.dumps({"type": "subscribe", "streams": ["\ud800"]}))
            error2 = json.loads(await asyncio.wait_for(first.recv(), TIMEOUT_S))
            bus.publish(sample_emotion("s1", "mono", 0))
            still = json.loads(await asyncio.wait_for(first.recv(), TIMEOUT_S))
    assert bad.value.response.status_code == 400 and b"printable" in bad.value.response.body
    assert full.value.response.status_code == 503
    assert b"websocket.max_subscribers" in full.value.response.body
    assert error["type"] == "error" and "nested too deeply" in error["message"]
    assert error2["type"] == "error" and "non-printable" in error2["message"]
    assert still["utterance_id"] == "s1/mono/0"


# ---------------------------------------------------- rows 1 and 3: publishers
def poisoned_events() -> list[events.Event]:
    surrogate = events.stream_started("s\ud800", "mono", "x", "m", ("a",))
    nan = sample_emotion("s1", "mono", 1)
    nan["confidence"] = math.nan
    inf = sample_emotion("s1", "mono", 2)
    inf["probabilities"]["happy"] = math.inf
    return [surrogate, nan, inf]


def test_to_json_refuses_nan_inf_and_surrogates() -> None:
    for event in poisoned_events():
        with pytest.raises(EventEncodingError, match="cannot be encoded"):
            events.to_json(event)


async def test_sinks_and_subscribers_survive_bad_events(tmp_path: Path) -> None:
    """Row 1: a bad event is skipped (logged, counted) by stdout, JSONL and every
    subscriber; the next good event still arrives everywhere; no NaN is ever written."""
    bus = EventBus()
    out = io.StringIO()
    stdout_pretty = StdoutSink(bus, pretty=True, include_partials=False, out=out)
    stdout_json = StdoutSink(bus, pretty=False, include_partials=False, out=io.StringIO())
    jsonl = JsonlSink(str(tmp_path / "events.jsonl"), bus)
    async with WebSocketServer(WebSocketConfig(port=0), bus) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/events") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            tasks = [asyncio.create_task(s.run()) for s in (stdout_pretty, stdout_json, jsonl)]
            for event in poisoned_events():
                bus.publish(event)
            bus.publish(sample_emotion("s1", "mono", 3))
            got = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            await wait_for(lambda: jsonl.written == 1 and stdout_json.written == 1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert got["utterance_id"] == "s1/mono/3"
    assert server.faults.count == 3
    assert stdout_json.faults.count == 3 and jsonl.faults.count == 3
    assert stdout_pretty.faults.count == 3
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["utterance_id"] for line in lines] == ["s1/mono/3"]
    assert out.getvalue().count("HAPPY") == 1 and "nan" not in out.getvalue().lower()
    assert "inf" not in out.getvalue().lower()
    assert stat.S_IMODE(os.stat(tmp_path / "events.jsonl").st_mode) == 0o600


# --------------------------------------------------------- row 6: personal data
async def test_caller_numbers_only_when_turned_on_and_audit_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    """Row 6: the AudioHook caller number is not in the source (events, INFO logs) unless
    ingest.include_caller_numbers is on; accepted connections and auth failures are audit
    lines."""
    sources = {}
    for on in (False, True):
        rec = RecordingRecognizer()
        server, base = await started(make_config(include_caller_numbers=on), rec)
        try:
            with caplog.at_level(logging.INFO):
                await asyncio.wait_for(send_audiohook(
                    f"{base}/ingest/audiohook", tone_call(f"AH-{on}", 0.3), pace=10,
                    api_key="ah-key"), 30)
                with pytest.raises(InvalidStatus):
                    async with connect(f"{base}/ingest/audiohook",
                                       additional_headers={"X-API-KEY": "wrong"}):
                        pass
                await wait_for(lambda r=rec: len(r.channels) == 2)
        finally:
            await server.__aexit__()
        sources[on] = rec.channels[(f"audiohook:AH-{on}", "customer")].source
    ani = "+15550100"  # what streamer.ingest.clients sends as participant.ani
    assert ani not in sources[False] and f"ani={ani}" in sources[True]
    info_off = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
                and "AH-False" in r.getMessage()]
    assert info_off and not any(ani in line for line in info_off)
    audit = [r.getMessage() for r in caplog.records if r.name == "streamer.audit"]
    assert any(a.startswith("ingest connection accepted route='audiohook'") for a in audit)
    assert any(a.startswith("ingest call started stream='audiohook:AH-False'")
               for a in audit)
    assert any(a.startswith("auth failure route='/ingest/audiohook'") for a in audit)
    assert not any("ah-key" in a or "wrong" in a for a in audit)  # never the secret


class FailingRecognizer(RecordingRecognizer):
    """Raises inside one call's recognizer channel (stream id 'boom'), like a bug would."""

    async def run_channel(self, channel):  # type: ignore[no-untyped-def]
        if channel.stream_id == "pcm:boom":
            raise RuntimeError("recognizer bug on this call")
        return await super().run_channel(channel)


async def test_an_error_inside_one_call_ends_that_call_only(
        caplog: pytest.LogCaptureFixture) -> None:
    rec = FailingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        good = asyncio.create_task(send_twilio(f"{base}/ingest/twilio",
                                               tone_call("CA-fine", 1.0), pace=4, **TWILIO))
        async with connect(f"{base}/ingest/pcm?token=pcm-secret&stream_id=boom",
                           open_timeout=TIMEOUT_S) as ws:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
        report = await asyncio.wait_for(good, TIMEOUT_S)
        await wait_for(lambda: rec.channels.get(("twilio:CA-fine", "agent"), Recorded("")).done)
    finally:
        await server.__aexit__()
    assert ws.close_code == 1011 and report.close_code == 1000
    assert server.stats.call_errors == 1 and "pcm:boom" not in server.calls
    assert any("call pcm:boom failed" in r.getMessage() for r in caplog.records)
