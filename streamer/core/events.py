"""The public event contract: builders for each event type and the JSON Schema they follow.

Events travel as plain JSON objects (dicts here); ``schema/events.schema.json``
is the authoritative description and ``validate_event`` checks against it.
"""

from __future__ import annotations

import json
import reprlib
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from models.asr import Transcript
from models.audio import SAMPLE_RATE
from streamer.core.errors import EventEncodingError
from streamer.core.messages import EmotionResult

# 4: enrolled names as speaker labels; 3: speaker labels and speaker_change cuts;
# 2: word times are stream times
SCHEMA_VERSION = "emotion-stream/4"
Event = dict[str, Any]


@dataclass(frozen=True)
class Latency:
    """Milliseconds from the end of speech to the event, by stage."""

    vad_hangover_ms: float
    queue_ms: float
    asr_ms: float
    fusion_ms: float
    total_ms: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.__dict__.items()}


def _common(kind: str, stream_id: str, channel: str) -> Event:
    return {"schema": SCHEMA_VERSION, "type": kind, "stream_id": stream_id,
            "channel": channel, "wall_time": time.time()}


def stream_started(stream_id: str, channel: str, source: str, model_id: str,
                   labels: tuple[str, ...]) -> Event:
    return {**_common("stream.started", stream_id, channel), "source": source,
            "sample_rate": SAMPLE_RATE, "model_id": model_id, "labels": list(labels)}


def stream_ended(stream_id: str, channel: str, duration_s: float, utterances: int,
                 reason: str, error: str | None = None, nonspeech: int = 0,
                 redecoded: int = 0, speakers: int | None = None,
                 speaker_changes: int | None = None) -> Event:
    """``speakers``/``speaker_changes``: with ``speakers.enabled``, the labels given and the
    utterances cut at a speaker change; None when speaker labelling is off."""
    return {**_common("stream.ended", stream_id, channel), "duration_s": round(duration_s, 3),
            "utterances": utterances, "nonspeech_utterances": nonspeech,
            "redecoded_utterances": redecoded, "speakers": speakers,
            "speaker_changes": speaker_changes, "reason": reason, "error": error}


def utterance_id(stream_id: str, channel: str, index: int) -> str:
    return f"{stream_id}/{channel}/{index}"


def utterance_partial(stream_id: str, channel: str, index: int, t_start: float, t_end: float,
                      text: str, stable_text: str) -> Event:
    return {**_common("utterance.partial", stream_id, channel),
            "utterance_id": utterance_id(stream_id, channel, index),
            "t_start": round(t_start, 3), "t_end": round(t_end, 3),
            "text": text, "stable_text": stable_text}


def utterance_emotion(stream_id: str, channel: str, index: int, t_start: float, t_end: float,
                      cut_reason: str, transcript: Transcript, result: EmotionResult,
                      latency: Latency, abstain_reason: str | None = None,
                      speaker: str | None = None, overlap: float | None = None) -> Event:
    """``abstain_reason`` set: not usable speech; ``result`` is then ``no_claim(...)``.
    ``speaker``: the channel's speaker label (``speakers.enabled``), else None.
    ``overlap``: seconds of the utterance where two people talk at once
    (``speakers.segmentation``); the key is absent when that is off."""
    extra = {} if overlap is None else {"overlap": round(overlap, 3)}
    return {
        **_common("utterance.emotion", stream_id, channel),
        "utterance_id": utterance_id(stream_id, channel, index),
        "t_start": round(t_start, 3), "t_end": round(t_end, 3), "cut_reason": cut_reason,
        "speaker": speaker, "text": transcript.text, "language": transcript.language,
        # Word times are stream times: the ASR's are relative to the utterance's audio.
        "words": [{"word": w.word, "start": round(t_start + w.start, 3),
                   "end": round(t_start + w.end, 3),
                   "probability": round(min(1.0, max(0.0, w.probability)), 4)}
                  for w in transcript.words],
        "speech": abstain_reason is None, "abstain_reason": abstain_reason,
        "label": result.label,
        "probabilities": {k: round(v, 4) for k, v in result.probabilities.items()},
        "confidence": round(result.confidence, 4),
        "valence": result.valence, "arousal": result.arousal, "dominance": result.dominance,
        "model_id": result.model_id, "modalities": list(result.modalities),
        "latency": latency.as_dict(),
        **extra,
    }


def speaker_revised(stream_id: str, channel: str,
                    revisions: list[tuple[int, str, str]]) -> Event:
    """Earlier utterances of the channel whose ``speaker`` changed (``speakers.revise_window``):
    each ``(utterance index, speaker it was published with or last revised to, new
    speaker)``. Published right after the ``utterance.emotion`` whose arrival revised them;
    a consumer replaces the speaker of each listed ``utterance_id``."""
    return {**_common("speaker.revised", stream_id, channel),
            "revisions": [{"utterance_id": utterance_id(stream_id, channel, index),
                           "speaker": speaker, "revised": revised}
                          for index, speaker, revised in revisions]}


def no_claim(model_id: str) -> EmotionResult:
    """The result of an utterance that was not speech: no label, no probabilities."""
    return EmotionResult(label="unknown", probabilities={}, confidence=0.0, model_id=model_id)


def control(kind: str, **fields: Any) -> Event:
    """WebSocket control messages: hello, subscribed, subscriber.lagged, error."""
    return {"schema": SCHEMA_VERSION, "type": kind, **fields}


@cache
def load_schema() -> dict[str, Any]:
    text = (resources.files("streamer") / "schema" / "events.schema.json").read_text("utf-8")
    return dict(json.loads(text))


@cache
def _validator() -> Any:
    """Built once: ``jsonschema.validate`` checks the schema itself on every call (~40x
    slower, minutes for the tests that publish thousands of events)."""
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(load_schema())
    return jsonschema.Draft202012Validator(load_schema())


def validate_event(event: Event) -> None:
    """Raise jsonschema.ValidationError if ``event`` breaks the contract."""
    _validator().validate(event)


def to_json(event: Event) -> str:
    """``event`` as compact JSON text that encodes as UTF-8.

    Refuses what is not JSON or not Unicode instead of publishing it: NaN and infinities
    (``allow_nan=False``; ``NaN`` is not JSON) and lone surrogates (no UTF-8 form) raise
    ``EventEncodingError`` naming the event; publishers log, count and skip it.
    """
    try:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # lone surrogates pass json.dumps but no socket or file
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        raise EventEncodingError(
            f"{describe(event)} cannot be encoded as JSON ({exc}); it is not published") from exc
    return text


def describe(event: Event) -> str:
    """'utterance.emotion event of stream 's1' channel 'mono'' with the ids escaped."""
    return (f"{reprlib.repr(event.get('type'))} event of stream "
            f"{reprlib.repr(event.get('stream_id'))} channel {reprlib.repr(event.get('channel'))}")
