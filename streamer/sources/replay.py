"""``emotion-stream replay``: send a recording into a running ``serve`` as a live call.

The file's channels are the call's parties, named by ``roles`` in channel order (``--roles
agent,customer``); without it the server's defaults apply (channel 0 the customer, 1 the
agent; a mono file is one party). It is converted once to 8 kHz telephone audio and sent
with the load generator's clients (``streamer.ingest.clients``: raw PCM, Twilio Media
Streams, Genesys AudioHook) at ``pace`` times real time; the server publishes the events as
for any call, under the stream id ``<route>:<stream_id>`` (``pcm:call``, ``twilio:call``,
``audiohook:call``) unless it runs with ``ingest.namespace_stream_ids: false``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr
from websockets.exceptions import InvalidStatus, InvalidURI

from streamer.audio.audio_io import open_audio_file
from streamer.audio.telephony import TELEPHONY_RATE
from streamer.core.config import IngestConfig
from streamer.core.errors import AudioInputError, StreamerError
from streamer.core.validation import InvalidClientString, check_identifier
from streamer.ingest.clients import CallAudio, SendReport, send_audiohook, send_pcm, send_twilio
from streamer.ingest.protocol import published_stream_id
from streamer.sources.local import resolve_source_path

ReplayProtocol = Literal["raw", "twilio", "audiohook"]
PROTOCOLS: tuple[ReplayProtocol, ...] = ("raw", "twilio", "audiohook")
MAX_PARTIES = {"raw": 8, "twilio": 2, "audiohook": 2}  # Twilio tracks, AudioHook channels
ROUTE: dict[ReplayProtocol, str] = {"raw": "pcm", "twilio": "twilio", "audiohook": "audiohook"}


def replayed_stream_id(protocol: ReplayProtocol, stream_id: str, namespaced: bool = True) -> str:
    """The stream id the server's events carry for a call replayed as ``stream_id``."""
    return published_stream_id(ROUTE[protocol], stream_id, namespaced)
NORMAL_CLOSE = 1000
# The parties Twilio (inbound, outbound) and AudioHook (external, internal) carry, in the
# order the clients send them; the server names them ingest.customer_role / agent_role.
PROTOCOL_ROLES = ("customer", "agent")


class ReplayError(StreamerError):
    """The server refused or broke off the replayed call."""


@dataclass(frozen=True)
class ReplayResult:
    protocol: ReplayProtocol
    url: str
    parties: int
    audio_s: float  # per party
    report: SendReport
    roles: tuple[str, ...]  # the file's channels' names, in channel order; () = server defaults


def parse_roles(text: str) -> tuple[str, ...]:
    """``--roles customer,agent`` as names (channel 0 first), each an edge identifier."""
    names = tuple(name.strip() for name in text.split(","))
    try:
        for name in names:
            check_identifier(name, "--roles name")
    except InvalidClientString as exc:
        raise ReplayError(f"{exc} (e.g. --roles customer,agent)") from exc
    if len(set(names)) != len(names):
        raise ReplayError(f"--roles names a party twice: {text!r}; give distinct names")
    return names


def party_order(roles: tuple[str, ...], protocol: ReplayProtocol) -> tuple[int, ...]:
    """The file's channel indices in the order the protocol sends its parties.

    Raw PCM sends the channels in file order with their names; Twilio and AudioHook carry
    exactly a customer (first) and an agent, so ``roles`` must name those two.
    """
    if protocol == "raw":
        return tuple(range(len(roles)))
    expected = PROTOCOL_ROLES[: len(roles)]
    if sorted(roles) != sorted(expected):
        raise ReplayError(
            f"--roles {','.join(roles)}: {protocol} carries the parties "
            f"{' and '.join(expected)} only; name the channels with those (e.g. --roles "
            f"{','.join(reversed(expected))}) or use --protocol raw for other names")
    return tuple(roles.index(role) for role in expected)


def default_url(protocol: ReplayProtocol, host: str = "127.0.0.1",
                port: int | None = None) -> str:
    """The ingest URL of a ``serve`` with the default ``ingest`` paths."""
    ingest = IngestConfig()
    path = {"raw": ingest.pcm_path, "twilio": ingest.twilio_path,
            "audiohook": ingest.audiohook_path}[protocol]
    return f"ws://{host}:{port or ingest.port}{path}"


def load_call(path: str, stream_id: str, protocol: ReplayProtocol,
              roles: tuple[str, ...] = ()) -> CallAudio:
    """The file as a call: one 8 kHz party per channel, resampled once from the file's own
    rate (an 8 kHz recording is sent with its own samples, not through 16 kHz and back, so
    the server gets what ``run`` reads from the same file: docs/conversations.md).

    ``roles`` (one per channel, or () for the server's defaults) orders the parties as the
    protocol sends them (``party_order``)."""
    with open_audio_file(resolve_source_path(path)) as f:
        rate = int(f.samplerate)
        try:
            audio = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioInputError(f"decoding '{path}' failed: {exc}") from exc
    if not len(audio):
        raise AudioInputError(f"'{path}' holds no audio")
    if audio.shape[1] > MAX_PARTIES[protocol]:
        raise AudioInputError(
            f"'{path}' has {audio.shape[1]} channels; {protocol} carries at most "
            f"{MAX_PARTIES[protocol]} (one per party); use --protocol raw or mix it down")
    if roles and len(roles) != audio.shape[1]:
        raise AudioInputError(
            f"'{path}' has {audio.shape[1]} channel(s) but --roles names {len(roles)} "
            f"({','.join(roles)}); give one name per channel, channel 0 first")
    order = party_order(roles, protocol) if roles else range(audio.shape[1])
    parties = tuple(np.ascontiguousarray(audio[:, i]) if rate == TELEPHONY_RATE
                    else soxr.resample(audio[:, i], rate, TELEPHONY_RATE).astype(np.float32)
                    for i in order)
    return CallAudio(stream_id, parties)


async def replay(path: str, protocol: ReplayProtocol, url: str | None = None,
                 token: str | None = None, pace: float = 1.0, stream_id: str | None = None,
                 signed_url: str | None = None, roles: tuple[str, ...] = ()) -> ReplayResult:
    """Send ``path`` as one call; raise ``ReplayError`` if the server did not end it cleanly.

    ``roles``: the channels' party names, channel 0 first (``parse_roles``); () leaves
    them to the server (customer, agent).

    ``token``: the raw-PCM bearer token, the Twilio auth token (the handshake is signed
    for ``signed_url``, default ``url`` as wss://) or the AudioHook API key.
    """
    if not (math.isfinite(pace) and pace > 0):  # NaN compares False with everything
        raise ReplayError(f"--pace must be a finite number > 0 (1 = real time, 4 = four "
                          f"times faster), got {pace}")
    url = url or default_url(protocol)
    call = load_call(path, stream_id or Path(path).stem, protocol, roles)
    try:
        if protocol == "raw":
            report = await send_pcm(url, call, pace=pace, token=token, roles=roles or None)
        elif protocol == "twilio":
            signed = signed_url or ("wss://" + url.split("://", 1)[1] if token else None)
            report = await send_twilio(url, call, pace=pace, auth_token=token,
                                       signed_url=signed)
        else:
            report = await send_audiohook(url, call, pace=pace, api_key=token)
    except InvalidStatus as exc:
        raise ReplayError(
            f"{url} refused the call: HTTP {exc.response.status_code} "
            f"{exc.response.body.decode('utf-8', 'replace').strip()!r}; check --token and "
            "the path (/ingest/pcm, /ingest/twilio, /ingest/audiohook)") from exc
    except (RuntimeError, TimeoutError) as exc:  # AudioHook: disconnect or no reply
        raise ReplayError(f"the AudioHook session at {url} failed: {exc}") from exc
    except (InvalidURI, OSError) as exc:
        raise ReplayError(f"cannot reach {url} ({exc}); is `emotion-stream serve` running "
                          "there?") from exc
    errors = [r.get("message") or r.get("parameters") for r in report.replies
              if r.get("type") in ("error", "disconnect")]
    if errors or report.close_code not in (NORMAL_CLOSE, None):
        raise ReplayError(
            f"the server at {url} ended the call after {report.sent_s:.1f} s of "
            f"{call.seconds:.1f} s: close code {report.close_code} {report.close_reason!r}"
            f"{'; ' + '; '.join(map(str, errors)) if errors else ''}. Check the URL, the "
            "protocol and --token (docs/ingest.md lists the close codes)")
    return ReplayResult(protocol, url, len(call.parties), call.seconds, report, roles)
