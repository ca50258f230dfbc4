"""Client sides of the ingest protocols: send a recorded call as a telephony platform would.

Used by the tests and by ``bench/loadgen.py``. Each sender paces audio at ``pace`` times
real time (1.0 = live: a frame is sent once it has been "spoken"), and returns a
``SendReport`` with the wall-clock time of stream time 0 and what the server answered.

``CallAudio.stream_id`` is the client's own id (raw PCM ``stream_id``, Twilio ``callSid``,
AudioHook ``conversationId``); the call's events carry ``<route>:<id>`` unless the server
runs with ``ingest.namespace_stream_ids: false``. ``client_ids`` maps either back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamer.audio.telephony import TELEPHONY_RATE, ulaw_encode
from streamer.ingest.audiohook import duration
from streamer.ingest.protocol import published_stream_id
from streamer.ingest.twilio import twilio_signature

REPLY_TIMEOUT_S = 60.0  # handshake and protocol replies; generous for a loaded server


@dataclass(frozen=True)
class CallAudio:
    """A call to replay: one 8 kHz float32 signal per party (customer first), equal length."""

    stream_id: str
    parties: tuple[np.ndarray, ...]

    @property
    def seconds(self) -> float:
        return len(self.parties[0]) / TELEPHONY_RATE


def client_ids(route: str, ids: list[str] | tuple[str, ...] | set[str]) -> dict[str, str]:
    """The stream ids the events of calls sent on ``route`` ("pcm", "twilio", "audiohook")
    with the clients' ``ids`` may carry -> the client's id: ``<route>:<id>`` (the default)
    and ``<id>`` (``ingest.namespace_stream_ids: false``), so a load generator matches the
    events of a server whatever its setting."""
    return {**{i: i for i in ids}, **{published_stream_id(route, i): i for i in ids}}


@dataclass
class SendReport:
    t0: float = 0.0  # time.monotonic() at stream time 0 (the first frame's start)
    replies: list[Any] = field(default_factory=list)  # server text messages (JSON decoded)
    close_code: int | None = None
    close_reason: str = ""
    sent_s: float = 0.0  # audio sent, seconds per party


class _Pacer:
    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.t0 = time.monotonic()

    async def wait_until(self, stream_s: float) -> None:
        delay = self.t0 + stream_s / self.pace - time.monotonic()
        await asyncio.sleep(max(0.0, delay))


async def _reader(ws: ClientConnection, report: SendReport) -> None:
    try:
        async for message in ws:
            if isinstance(message, str):
                report.replies.append(json.loads(message))
    except ConnectionClosed:
        pass  # recorded below from ws.close_code
    report.close_code = ws.close_code
    report.close_reason = ws.close_reason or ""


def _frames(call: CallAudio, frame_ms: int, stop_at_s: float | None) -> list[tuple[float,
                                                                                  list[bytes]]]:
    n = int(TELEPHONY_RATE * frame_ms / 1000)
    total = len(call.parties[0])
    if stop_at_s is not None:
        total = min(total, int(stop_at_s * TELEPHONY_RATE))
    frames = []
    for start in range(0, total, n):
        frames.append((start / TELEPHONY_RATE,
                       [ulaw_encode(p[start:min(start + n, total)]) for p in call.parties]))
    return frames


async def send_twilio(url: str, call: CallAudio, pace: float = 1.0, frame_ms: int = 20,
                      auth_token: str | None = None, signed_url: str | None = None,
                      disconnect_at_s: float | None = None) -> SendReport:
    """Replay ``call`` as Twilio Media Streams (tracks inbound = party 0, outbound = 1)."""
    headers = {}
    if auth_token is not None:
        headers["X-Twilio-Signature"] = twilio_signature(auth_token, signed_url or url)
    report = SendReport()
    stream_sid = "MZ" + uuid.uuid4().hex
    tracks = ["inbound", "outbound"][: len(call.parties)]
    async with connect(url, additional_headers=headers, open_timeout=REPLY_TIMEOUT_S) as ws:
        reader = asyncio.create_task(_reader(ws, report))
        seq = 1
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        seq += 1
        await ws.send(json.dumps({
            "event": "start", "sequenceNumber": str(seq), "streamSid": stream_sid,
            "start": {"streamSid": stream_sid, "accountSid": "AC" + "0" * 32,
                      "callSid": call.stream_id, "tracks": tracks, "customParameters": {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))
        pacer = _Pacer(pace)
        report.t0 = pacer.t0
        try:
            for chunk, (at, payloads) in enumerate(_frames(call, frame_ms, disconnect_at_s), 1):
                await pacer.wait_until(at + frame_ms / 1000)
                for track, payload in zip(tracks, payloads, strict=True):
                    seq += 1
                    await ws.send(json.dumps({
                        "event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                        "media": {"track": track, "chunk": str(chunk),
                                  "timestamp": str(int(at * 1000)),
                                  "payload": base64.b64encode(payload).decode()}}))
                report.sent_s = at + frame_ms / 1000
            if disconnect_at_s is None:
                seq += 1
                await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq),
                                          "streamSid": stream_sid,
                                          "stop": {"accountSid": "AC" + "0" * 32,
                                                   "callSid": call.stream_id}}))
        except ConnectionClosed:
            pass  # the server closed on us; the reader recorded the close code
    await reader
    return report


class AudioHookClient:
    """The client (Genesys Cloud) side of an AudioHook session; sans pacing."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.id = session_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.report = SendReport()

    async def read(self) -> None:
        """Reader task: queue server messages (bounded; a test client reads them)."""
        try:
            async for raw in self.ws:
                if isinstance(raw, str):
                    message = json.loads(raw)
                    self.serverseq = max(self.serverseq, int(message.get("seq", 0)))
                    self.report.replies.append(message)
                    if self.messages.full():
                        self.messages.get_nowait()
                    self.messages.put_nowait(message)
        except ConnectionClosed:
            pass  # recorded below
        self.report.close_code = self.ws.close_code
        self.report.close_reason = self.ws.close_reason or ""

    async def send(self, kind: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({
            "version": "2", "id": self.id, "type": kind, "seq": self.seq,
            "serverseq": self.serverseq, "position": duration(self.samples / TELEPHONY_RATE),
            "parameters": parameters}))

    async def expect(self, kind: str, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                if message.get("type") == kind:
                    return message
                if message.get("type") == "disconnect":
                    raise RuntimeError(f"server disconnected: {message['parameters']}")

    def open_parameters(self, conversation_id: str, stereo: bool = True) -> dict[str, Any]:
        media = [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                  "rate": 8000}] if stereo else []
        media += [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
        return {"organizationId": str(uuid.uuid4()), "conversationId": conversation_id,
                "participant": {"id": str(uuid.uuid4()), "ani": "+15550100",
                                "aniName": "Customer", "dnis": "+15550199"},
                "media": media, "language": "en-US"}


async def send_audiohook(url: str, call: CallAudio, pace: float = 1.0, frame_ms: int = 100,
                         api_key: str | None = None,
                         disconnect_at_s: float | None = None) -> SendReport:
    """Replay ``call`` as a Genesys AudioHook session (external = party 0, internal = 1)."""
    session_id = str(uuid.uuid4())
    headers = {"Audiohook-Session-Id": session_id,
               "Audiohook-Correlation-Id": str(uuid.uuid4()),
               "Audiohook-Organization-Id": str(uuid.uuid4())}
    if api_key is not None:
        headers["X-API-KEY"] = api_key
    async with connect(url, additional_headers=headers, open_timeout=REPLY_TIMEOUT_S) as ws:
        client = AudioHookClient(ws, session_id)
        reader = asyncio.create_task(client.read())
        await client.send("open", client.open_parameters(call.stream_id,
                                                         stereo=len(call.parties) == 2))
        opened = await client.expect("opened")
        channels = opened["parameters"]["media"][0]["channels"]
        pacer = _Pacer(pace)
        client.report.t0 = pacer.t0
        try:
            for at, payloads in _frames(call, frame_ms, disconnect_at_s):
                await pacer.wait_until(at + frame_ms / 1000)
                frame = np.stack([np.frombuffer(p, dtype=np.uint8)
                                  for p in payloads[: len(channels)]], axis=1)
                await ws.send(frame.tobytes())  # interleaved external, internal
                client.samples += frame.shape[0]
                client.report.sent_s = client.samples / TELEPHONY_RATE
            if disconnect_at_s is None:
                await client.send("close", {"reason": "end"})
                await client.expect("closed")
        except ConnectionClosed:
            pass  # recorded by the reader
    await reader
    return client.report


async def send_pcm(url: str, call: CallAudio, pace: float = 1.0, frame_ms: int = 100,
                   token: str | None = None, disconnect_at_s: float | None = None,
                   roles: tuple[str, ...] | None = None) -> SendReport:
    """Replay ``call`` as raw interleaved 16-bit PCM at 8 kHz; ``roles`` names its parties
    (None: the server's defaults)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report = SendReport()
    async with connect(url, additional_headers=headers, open_timeout=REPLY_TIMEOUT_S) as ws:
        reader = asyncio.create_task(_reader(ws, report))
        opening: dict[str, Any] = {"type": "start", "stream_id": call.stream_id,
                                   "sample_rate": TELEPHONY_RATE,
                                   "channels": len(call.parties), "encoding": "pcm16le"}
        if roles is not None:
            opening["roles"] = list(roles)
        await ws.send(json.dumps(opening))
        n = int(TELEPHONY_RATE * frame_ms / 1000)
        total = len(call.parties[0])
        if disconnect_at_s is not None:
            total = min(total, int(disconnect_at_s * TELEPHONY_RATE))
        # x 32768: the inverse of the server's int16 -> float (and libsndfile's), so 16-bit
        # samples read from a file go out unchanged (x 32767 moved loud ones by 1 LSB).
        pcm = np.stack([np.clip(np.round(p[:total] * 32768), -32768, 32767) for p in
                        call.parties], axis=1).astype("<i2")
        pacer = _Pacer(pace)
        report.t0 = pacer.t0
        try:
            for start in range(0, total, n):
                await pacer.wait_until((start + n) / TELEPHONY_RATE)
                await ws.send(pcm[start:start + n].tobytes())
                report.sent_s = min(start + n, total) / TELEPHONY_RATE
            if disconnect_at_s is None:
                await ws.send(json.dumps({"type": "stop"}))
                async with asyncio.timeout(REPLY_TIMEOUT_S):
                    while not any(r.get("type") == "stopped" for r in report.replies):
                        await asyncio.sleep(0.01)
        except ConnectionClosed:
            pass  # recorded by the reader
    await reader
    return report
