"""The ingest WebSocket server: one connection = one call, any number of calls at once.

Routes (configurable, see ``IngestConfig``): raw PCM, Twilio Media Streams and Genesys
AudioHook. The handshake is where a connection is refused: unknown path (404), failed
authentication (401: bearer token for raw PCM, X-Twilio-Signature for Twilio, X-API-KEY
for AudioHook), too many calls (503: ``ingest.max_calls`` in all,
``ingest.max_<protocol>_calls`` per protocol, so one route and its one credential cannot
take every slot,
``ingest.max_calls_per_address`` per client IP) and too many handshakes from one address
(429: ``ingest.handshakes_per_minute_per_address``), no models yet or draining (503).
Each refusal says which limit and is counted by reason on the edge (``edge.refused``, the
``refused_connections`` metric). ``GET /healthz`` answers with the server's counters.
Listening, routing and the JSON refusals are ``streamer.publish.http_edge.HttpEdge``'s. Accepted
connections, calls and auth failures are audit lines (``streamer.audit`` logger).
``drain`` is the graceful stop (SIGTERM): no new calls, a deadline for the open ones.

Each connection runs ``serve_connection``: it only moves data between the WebSocket,
the protocol's sans-I/O parser and the call's ``CallSession``. A malformed message ends
that one connection (the protocol's error, then a close code); other calls are not
affected. Live calls are keyed by their published stream id, which carries the route
(``pcm:call-1``, ``twilio:CA...``, ``audiohook:<conversationId>``; see
``protocol.published_stream_id``): a second connection for a live id is refused (1008),
never merged, and ids of different routes never meet. Each route has one shared
credential (no per-client identity to namespace by). An unexpected error in one call is
logged with its stream id, counted (``IngestStats.call_errors``) and closes that
connection with 1011. When a client disconnects, even mid-utterance, the audio it sent
is still recognized and published, then the call's state is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer.core.config import IngestConfig
from streamer.engine.recognizer import Recognizer
from streamer.ingest.audiohook import AudioHookProtocol
from streamer.ingest.protocol import (
    CLOSE_INTERNAL,
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
from streamer.publish.http_edge import (
    TOKEN_HINT,
    HttpEdge,
    Listen,
    Refusal,
    audit,
    json_response,
    peer_host,
    secret_matches,
    token_ok,
    websocket_path,
)

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001  # a call started while the server drains (shutting down)
END_LINGER_S = 5.0  # after the call ended in protocol, wait this long for the client to close


@dataclass
class IngestStats:
    calls_started: int = 0
    calls_finished: int = 0
    refused_auth: int = 0
    refused_busy: int = 0
    refused_rate: int = 0
    protocol_failures: int = 0
    call_errors: int = 0  # unexpected errors that ended one call (1011)
    utterances: int = 0


@dataclass
class HandshakeRate:
    """Token bucket per client address: ``per_minute`` handshakes, bursts up to as many."""

    per_minute: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, time

    def allow(self, address: str, now: float) -> bool:
        tokens, then = self._buckets.get(address, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * self.per_minute / 60.0)
        if len(self._buckets) > 10_000:  # forget addresses whose buckets are full again
            self._buckets = {a: (t, w) for a, (t, w) in self._buckets.items()
                             if t + (now - w) * self.per_minute / 60.0 < self.per_minute}
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1.0, now)
        return True


@dataclass(frozen=True)
class IngestRoute:
    """One ingest route: its protocol name, the handshake check and the connection handler
    (any object with ServerConnection's recv/send/close/request/remote_address)."""

    name: str
    admit: Callable[[str, Request], Refusal | None]  # (client address, handshake request)
    handle: Callable[[Any], Awaitable[None]]


class IngestServer:
    """Listens for calls; use ``async with``. Calls run until their client ends them."""

    def __init__(self, config: IngestConfig, recognizer: Recognizer | None,
                 reuse_port: bool = False) -> None:
        """``reuse_port``: share ``config.port`` with other processes (SO_REUSEPORT)."""
        self.config = config
        # None while the models load: calls are refused (503) until ``serve`` sets it.
        self.recognizer = recognizer
        self.draining = False  # set by ``drain``: no new calls
        self._cutting = False  # the drain deadline passed: calls still open end as "shutdown"
        self.limits = Limits(config.max_audio_ms_per_message, config.customer_role,
                             config.agent_role, config.include_caller_numbers,
                             config.namespace_stream_ids)
        # Live calls by published stream id (``<protocol>:<client id>`` unless
        # ingest.namespace_stream_ids is off): a second connection for one is refused.
        self.calls: dict[str, CallSession] = {}
        self.connections = 0
        self.by_protocol: Counter[str] = Counter()  # open connections per protocol
        self.by_address: Counter[str] = Counter()  # open connections per client IP
        self.rate = HandshakeRate(config.handshakes_per_minute_per_address)
        self.stats = IngestStats()
        self.edge = HttpEdge(Listen(
            config.host, config.port, config.max_message_bytes, purpose="call ingest",
            port_hint="choose another port with --set ingest.port=N",
            tls_cert=config.tls_cert, tls_key=config.tls_key, reuse_port=reuse_port))
        self.edge.add_http("/healthz", self._healthz)
        routes: tuple[tuple[str, str, Callable[[Request], str | None],
                            Callable[[str], IngestProtocol]], ...] = (
            (RawPcmProtocol.name, config.pcm_path, self._auth_pcm, self._pcm_protocol),
            (TwilioProtocol.name, config.twilio_path, self._auth_twilio,
             lambda _: TwilioProtocol(self.limits)),
            (AudioHookProtocol.name, config.audiohook_path, self._auth_audiohook,
             lambda _: AudioHookProtocol(self.limits)),
        )
        self.protocol_limits = {RawPcmProtocol.name: ("ingest.max_pcm_calls",
                                                      config.max_pcm_calls),
                                TwilioProtocol.name: ("ingest.max_twilio_calls",
                                                      config.max_twilio_calls),
                                AudioHookProtocol.name: ("ingest.max_audiohook_calls",
                                                         config.max_audiohook_calls)}
        # The same routes for other front ends (streamer.scale: behind Ray Serve's proxy).
        self.routes: dict[str, IngestRoute] = {}
        for name, path, auth, protocol in routes:
            self.edge.add_websocket(path, partial(self._handle, name, protocol),
                                    peer_guard=partial(self._admit, name, auth))
            self.routes[websocket_path(path)] = IngestRoute(
                name, partial(self._admit, name, auth), partial(self._handle, name, protocol))
        for name, secret in (("ingest.token", config.token),
                             ("ingest.twilio_auth_token", config.twilio_auth_token),
                             ("ingest.audiohook_api_key", config.audiohook_api_key)):
            if secret is None:
                log.warning("%s is not set: that ingest route accepts anyone who can reach "
                            "%s:%d", name, config.host, config.port)
        if not config.namespace_stream_ids:
            log.warning("ingest.namespace_stream_ids is off: stream ids are the clients' own, "
                        "shared by the three routes, so a client of one route can take a "
                        "call's id first and have the other route's call with that id "
                        "refused (1008)")

    @property
    def port(self) -> int:
        return self.edge.port

    async def __aenter__(self) -> IngestServer:
        await self.edge.start()
        if self.recognizer is None:
            log.info("ingest port %s://%s:%d open; calls are refused until the models are "
                     "loaded", self.edge.listen.scheme, self.config.host, self.port)
        else:
            self.log_listening()
        return self

    def log_listening(self) -> None:
        """The line that says calls are taken (scripts wait for it)."""
        log.info("call ingest on %s://%s:%d: raw PCM %s, Twilio %s, AudioHook %s",
                 self.edge.listen.scheme, self.config.host, self.port, self.config.pcm_path,
                 self.config.twilio_path, self.config.audiohook_path)

    async def __aexit__(self, *exc: object) -> None:
        await self.edge.stop()

    async def drain(self, timeout_s: float) -> list[str]:
        """Graceful stop: take no new call (``draining``; refusals say so), give the calls in
        progress ``timeout_s`` to end, then stop listening and cut the rest: their
        connections close with 1001, the audio received is still recognized and each party
        ends with reason "shutdown". Returns the stream ids of the calls cut."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cut = sorted(self.calls)
        if cut:
            self._cutting = True
            log.warning("ingest: drain deadline (%.0f s) passed with %d calls in progress; "
                        "cutting them: %s", timeout_s, len(cut), ", ".join(cut))
        await self.edge.stop()
        return cut

    # ------------------------------------------------------------- handshake
    def _admit(self, name: str, auth: Callable[[Request], str | None], address: str,
               request: Request) -> Refusal | None:
        if not self.rate.allow(address, time.monotonic()):
            self.stats.refused_rate += 1
            return Refusal(HTTPStatus.TOO_MANY_REQUESTS,
                           f"more than {self.config.handshakes_per_minute_per_address} "
                           "handshakes a minute from this address "
                           "(ingest.handshakes_per_minute_per_address); slow down",
                           (("Retry-After", "1"),), reason="handshake_rate")
        problem = auth(request)
        if problem is not None:
            self.stats.refused_auth += 1
            return Refusal(HTTPStatus.UNAUTHORIZED, problem, reason="auth")
        closed = self.not_accepting()
        if closed is not None:
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE, closed[1], (("Retry-After", "5"),),
                           reason=closed[0])
        busy = self._busy(name, address)
        if busy is not None:
            self.stats.refused_busy += 1
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE, busy[1], (("Retry-After", "5"),),
                           reason=busy[0])
        return None

    def not_accepting(self) -> tuple[str, str] | None:
        """Why no call is taken at all now (reason, message): draining or no models yet."""
        if self.draining:
            return ("draining", "this server is shutting down (draining); call another server")
        if self.recognizer is None:
            return ("not_ready", "this server is still loading its models; retry shortly")
        return None

    def _busy(self, name: str, address: str) -> tuple[str, str] | None:
        """Which connection limit a new ``name`` connection from ``address`` would break:
        (the limit's config key without 'ingest.', a message), else None."""
        key, most = self.protocol_limits[name]
        per_address = self.config.max_calls_per_address
        if self.connections >= self.config.max_calls:
            return ("max_calls", f"this server already serves {self.connections} calls "
                                 "(ingest.max_calls); retry later or on another server")
        if self.by_protocol[name] >= most:
            return (key.removeprefix("ingest."),
                    f"this server already serves {self.by_protocol[name]} {name} calls "
                    f"({key}); retry later or on another server")
        kept = self._reserved_for_others(name)
        if kept and self.connections + kept >= self.config.max_calls:
            return ("max_calls", f"this server serves {self.connections} calls and keeps its "
                                 f"other {self.config.max_calls - self.connections} slots for "
                                 "the other protocols (ingest.reserved_calls_per_protocol); "
                                 "retry later or on another server")
        if per_address is not None and self.by_address[address] >= per_address:
            return ("max_calls_per_address",
                    f"this address already has {self.by_address[address]} calls "
                    "(ingest.max_calls_per_address); retry later")
        return None

    def _reserved_for_others(self, name: str) -> int:
        """Slots of ``max_calls`` kept free for the protocols other than ``name``: each
        keeps ``reserved_calls_per_protocol`` (at most a third of max_calls) minus the
        calls it has, so callers of two routes cannot lock the third out."""
        reserve = min(self.config.reserved_calls_per_protocol, self.config.max_calls // 3)
        return sum(max(0, reserve - self.by_protocol[other])
                   for other in self.protocol_limits if other != name)

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
                "max_calls": self.config.max_calls, "draining": self.draining,
                "connections_by_protocol": dict(self.by_protocol), **self.stats.__dict__}

    # ----------------------------------------------------------- connections
    def _pcm_protocol(self, request_path: str) -> IngestProtocol:
        # The raw PCM format may come in the query string (?encoding=...&channels=2).
        return RawPcmProtocol(self.limits, dict(parse_qsl(urlsplit(request_path).query)))

    async def _handle(self, name: str, protocol: Callable[[str], IngestProtocol],
                      ws: ServerConnection) -> None:
        address = peer_host(ws)
        busy = self._busy(name, address)  # raced past the handshake check?
        self.connections += 1
        self.by_protocol[name] += 1
        self.by_address[address] += 1
        try:
            if busy is not None:
                self.stats.refused_busy += 1
                self.edge.refused[busy[0]] += 1
                await ws.close(CLOSE_TRY_AGAIN, busy[1][:120])
                return
            audit("ingest connection accepted", route=name, remote=ws.remote_address,
                  identity=self._identity(name))
            parser = protocol(ws.request.path if ws.request else "/")
            try:
                await self.serve_connection(ws, parser)
            except Exception:  # the bulkhead: one call's error ends that call only
                self.stats.call_errors += 1
                calls = [c.stream_id for c in self.calls.values() if c.connection is ws]
                log.exception("ingest %s: call %s failed; closing its connection (1011), "
                              "other calls go on", name, calls[0] if calls else "(not started)")
                for stream_id in calls:
                    self.calls.pop(stream_id, None)
                await ws.close(CLOSE_INTERNAL, "internal server error")
        finally:
            self.connections -= 1
            self.by_protocol[name] -= 1
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]

    def _identity(self, name: str) -> str:
        """Which credential admitted a connection (for the audit log; never the secret)."""
        secret = {RawPcmProtocol.name: self.config.token,
                  TwilioProtocol.name: self.config.twilio_auth_token,
                  AudioHookProtocol.name: self.config.audiohook_api_key}[name]
        kind = {RawPcmProtocol.name: "ingest.token",
                TwilioProtocol.name: "twilio signature",
                AudioHookProtocol.name: "audiohook api key"}[name]
        return kind if secret is not None else "anonymous"

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
                    await calls[0].end("shutdown" if self._cutting else "client_closed")
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
                    closed = self.not_accepting()  # connected before the drain began
                    if closed is not None:
                        self.edge.refused[closed[0]] += 1
                        await ws.close(CLOSE_GOING_AWAY, closed[1][:120])
                        return
                    started = self._start_call(event, tg, ws)
                    if started is None:
                        self.edge.refused["duplicate_stream"] += 1
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

    def _start_call(self, start: CallStart, tg: asyncio.TaskGroup,
                    ws: ServerConnection) -> CallSession | None:
        assert self.recognizer is not None  # not_accepting() was checked first
        if start.stream_id in self.calls:  # refused, never merged into the live call
            log.warning("ingest: refusing a second connection for active stream %s",
                        start.stream_id)
            return None
        call = CallSession(self.recognizer, start, self.config.chunk_ms,
                           self.config.channel_queue_chunks)
        call.connection = ws
        self.calls[start.stream_id] = call
        audit("ingest call started", stream=start.stream_id, remote=ws.remote_address,
              parties=",".join(start.channels))
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
        self.edge.refused["bad_protocol"] += 1
        log.warning("ingest %s: protocol error, closing: %s", protocol.name, failure.message)
        if failure.linger_s > 0:  # let the client run the protocol's close handshake
            try:
                async with asyncio.timeout(failure.linger_s):
                    while not protocol.closing_done:
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
