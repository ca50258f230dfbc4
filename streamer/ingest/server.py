"""The ingest WebSocket server: one connection = one call, any number of calls at once.

Routes (configurable, see ``IngestConfig``): raw PCM, Twilio Media Streams and Genesys
AudioHook. The handshake is where a connection is refused: unknown path (404), failed
authentication (401: bearer token for raw PCM, X-Twilio-Signature for Twilio, X-API-KEY
for AudioHook), too many calls (503). ``GET /healthz`` answers with the server's counters.
Listening, routing and the JSON refusals are ``streamer.http_edge.HttpEdge``'s.

Each connection runs ``serve_connection``: it only moves data between the WebSocket,
the protocol's sans-I/O parser and the call's ``CallSession``. A malformed message ends
that one connection (the protocol's error, then a close code); other calls are not
affected. When a client disconnects, even mid-utterance, the audio it sent is still
recognized and published, then the call's state is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer.config import IngestConfig
from streamer.http_edge import (
    TOKEN_HINT,
    HttpEdge,
    Listen,
    Refusal,
    json_response,
    secret_matches,
    token_ok,
)
from streamer.ingest.audiohook import AudioHookProtocol
from streamer.ingest.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CallEnd,
    CallStart,
    ChannelAudio,
    Failure,
    IngestProtocol,
    Limits,
    Pause,
    Reply,
)
from streamer.ingest.raw_pcm import RawPcmProtocol
from streamer.ingest.session import CallSession
from streamer.ingest.twilio import TwilioProtocol, signature_ok
from streamer.recognizer import Recognizer

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN = 1013
END_LINGER_S = 5.0  # after the call ended in protocol, wait this long for the client to close


@dataclass
class IngestStats:
    calls_started: int = 0
    calls_finished: int = 0
    refused_auth: int = 0
    refused_busy: int = 0
    protocol_failures: int = 0
    utterances: int = 0


class IngestServer:
    """Listens for calls; use ``async with``. Calls run until their client ends them."""

    def __init__(self, config: IngestConfig, recognizer: Recognizer) -> None:
        self.config = config
        self.recognizer = recognizer
        self.limits = Limits(config.max_audio_ms_per_message, config.customer_role,
                             config.agent_role)
        self.calls: dict[str, CallSession] = {}
        self.connections = 0
        self.stats = IngestStats()
        self.edge = HttpEdge(Listen(
            config.host, config.port, config.max_message_bytes, purpose="call ingest",
            port_hint="choose another port with --set ingest.port=N"))
        self.edge.add_http("/healthz", self._healthz)
        routes: tuple[tuple[str, Callable[[Request], str | None],
                            Callable[[str], IngestProtocol]], ...] = (
            (config.pcm_path, self._auth_pcm, self._pcm_protocol),
            (config.twilio_path, self._auth_twilio, lambda _: TwilioProtocol(self.limits)),
            (config.audiohook_path, self._auth_audiohook,
             lambda _: AudioHookProtocol(self.limits)),
        )
        for path, auth, protocol in routes:
            self.edge.add_websocket(path, partial(self._handle, protocol),
                                    partial(self._admit, auth))
        for name, secret in (("ingest.token", config.token),
                             ("ingest.twilio_auth_token", config.twilio_auth_token),
                             ("ingest.audiohook_api_key", config.audiohook_api_key)):
            if secret is None:
                log.warning("%s is not set: that ingest route accepts anyone who can reach "
                            "%s:%d", name, config.host, config.port)

    @property
    def port(self) -> int:
        return self.edge.port

    async def __aenter__(self) -> IngestServer:
        await self.edge.start()
        log.info("call ingest on ws://%s:%d: raw PCM %s, Twilio %s, AudioHook %s",
                 self.config.host, self.port, self.config.pcm_path, self.config.twilio_path,
                 self.config.audiohook_path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.edge.stop()

    # ------------------------------------------------------------- handshake
    def _admit(self, auth: Callable[[Request], str | None], request: Request) -> Refusal | None:
        problem = auth(request)
        if problem is not None:
            self.stats.refused_auth += 1
            return Refusal(HTTPStatus.UNAUTHORIZED, problem)
        if self.connections >= self.config.max_calls:
            self.stats.refused_busy += 1
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE,
                           f"this server already serves {self.connections} calls "
                           f"(ingest.max_calls); retry later or on another server",
                           (("Retry-After", "5"),))
        return None

    def _auth_pcm(self, request: Request) -> str | None:
        return None if token_ok(self.config.token, request) else TOKEN_HINT

    def _auth_twilio(self, request: Request) -> str | None:
        secret = self.config.twilio_auth_token
        if secret is None:
            return None
        base = self.config.twilio_public_url or f"wss://{request.headers.get('Host', '')}"
        url = base.rstrip("/") + request.path
        if signature_ok(secret, url, request.headers.get("X-Twilio-Signature")):
            return None
        return (f"missing or invalid X-Twilio-Signature for {url}; check ingest.twilio_auth_token "
                "and that ingest.twilio_public_url is the URL in your <Stream> TwiML")

    def _auth_audiohook(self, request: Request) -> str | None:
        key = self.config.audiohook_api_key
        if key is None:
            return None
        # An empty header is no key, whatever the configured one.
        if secret_matches(request.headers.get("X-API-KEY") or None, key):
            return None
        return "missing or wrong X-API-KEY header (the AudioHook integration's API key)"

    def _healthz(self, request: Request) -> Response:
        return json_response(HTTPStatus.OK, self.health())

    def health(self) -> dict[str, Any]:
        return {"calls": len(self.calls), "connections": self.connections,
                "max_calls": self.config.max_calls, **self.stats.__dict__}

    # ----------------------------------------------------------- connections
    def _pcm_protocol(self, request_path: str) -> IngestProtocol:
        # The raw PCM format may come in the query string (?encoding=...&channels=2).
        return RawPcmProtocol(self.limits, dict(parse_qsl(urlsplit(request_path).query)))

    async def _handle(self, protocol: Callable[[str], IngestProtocol],
                      ws: ServerConnection) -> None:
        self.connections += 1
        try:
            if self.connections > self.config.max_calls:  # raced past the handshake check
                self.stats.refused_busy += 1
                await ws.close(CLOSE_TRY_AGAIN, "too many calls; retry later")
                return
            await self.serve_connection(ws, protocol(ws.request.path if ws.request else "/"))
        finally:
            self.connections -= 1

    async def serve_connection(self, ws: ServerConnection, protocol: IngestProtocol) -> None:
        """Move messages from ``ws`` through ``protocol`` into a call, until it ends."""
        calls: list[CallSession] = []  # the call, once the protocol started it
        async with asyncio.TaskGroup() as tg:
            try:
                await self._pump(ws, protocol, calls, tg)
            except ConnectionClosed as exc:
                if calls and not calls[0].ended:
                    log.info("ingest %s: call %s: client disconnected before ending the call "
                             "(%s); recognizing the audio received", protocol.name,
                             calls[0].stream_id, exc)
                    await calls[0].end("client_closed")
            # Not in a finally: on cancellation or an error the task group stops the call.
            if calls:
                await calls[0].end()
        if calls:
            self.calls.pop(calls[0].stream_id, None)
            self.stats.calls_finished += 1

    async def _pump(self, ws: ServerConnection, protocol: IngestProtocol,
                    calls: list[CallSession], tg: asyncio.TaskGroup) -> None:
        timeout = self.config.idle_timeout_s
        while True:
            for event in protocol.poll():
                call = calls[0] if calls else None
                if isinstance(event, CallStart):
                    started = self._start_call(event, tg)
                    if started is None:
                        await ws.close(CLOSE_POLICY, "stream id already active")
                        return
                    calls.append(started)
                elif isinstance(event, ChannelAudio) and call is not None:
                    await call.audio(event.channel, event.samples)
                elif isinstance(event, Reply):
                    await ws.send(event.text)
                elif isinstance(event, Pause) and call is not None:
                    await call.pause()
                elif isinstance(event, CallEnd):
                    if call is not None:
                        await call.end()
                    timeout = END_LINGER_S
                elif isinstance(event, Failure):
                    await self._fail(ws, protocol, event)
                    return
            try:
                message = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                if protocol.ended:
                    await ws.close(CLOSE_NORMAL, "call ended")
                else:
                    log.warning("ingest %s: no message for %.0f s, closing", protocol.name,
                                timeout)
                    await ws.close(CLOSE_POLICY, f"no message for {timeout:.0f} s")
                return
            if isinstance(message, str):
                protocol.receive_text(message)
            else:
                protocol.receive_bytes(message)

    def _start_call(self, start: CallStart, tg: asyncio.TaskGroup) -> CallSession | None:
        if start.stream_id in self.calls:
            log.warning("ingest: refusing a second connection for active stream %s",
                        start.stream_id)
            return None
        call = CallSession(self.recognizer, start, self.config.chunk_ms,
                           self.config.channel_queue_chunks)
        self.calls[start.stream_id] = call
        self.stats.calls_started += 1
        tg.create_task(self._run_call(call), name=f"call:{start.stream_id}")
        log.info("ingest: call %s started (%s), parties %s", start.stream_id, start.source,
                 ", ".join(start.channels))
        return call

    async def _run_call(self, call: CallSession) -> None:
        counts = await call.run()
        self.stats.utterances += sum(counts.values())
        log.info("ingest: call %s finished: utterances %s, ingest waited %.1f s on full "
                 "queues", call.stream_id, counts, call.blocked_s)

    async def _fail(self, ws: ServerConnection, protocol: IngestProtocol,
                    failure: Failure) -> None:
        self.stats.protocol_failures += 1
        log.warning("ingest %s: protocol error, closing: %s", protocol.name, failure.message)
        if failure.linger_s > 0:  # let the client run the protocol's close handshake
            try:
                async with asyncio.timeout(failure.linger_s):
                    while getattr(protocol, "state", None) != "closed":
                        message = await ws.recv()
                        if isinstance(message, str):
                            protocol.receive_text(message)
                        for event in protocol.poll():
                            if isinstance(event, Reply):
                                await ws.send(event.text)
            except (TimeoutError, ConnectionClosed) as exc:
                # The close handshake is optional for a misbehaving client: close anyway.
                log.debug("ingest %s: no close handshake after the error (%r)", protocol.name,
                          exc)
        reason = failure.message.encode()[:120].decode(errors="ignore")
        await ws.close(failure.close_code, reason)
