"""A synthetic two-call conversation built with the real event builders (schema-checked)."""

from __future__ import annotations

from models.asr import Transcript, Word
from streamer.core import events
from streamer.core.messages import EmotionResult

LABELS = ("neutral", "happy", "sad", "angry")
MODEL_ID = "test-model"


def started(stream: str, channel: str) -> events.Event:
    return checked(events.stream_started(stream, channel, f"test:{stream}", MODEL_ID, LABELS))


def ended(stream: str, channel: str, utterances: int = 0) -> events.Event:
    return checked(events.stream_ended(stream, channel, 30.0, utterances, "end_of_input"))


def partial(stream: str, channel: str, index: int, t_start: float, text: str,
            stable_text: str) -> events.Event:
    return checked(events.utterance_partial(stream, channel, index, t_start, t_start + 1.0,
                                            text, stable_text))


def emotion(stream: str, channel: str, index: int, t_start: float, t_end: float, text: str,
            label: str, confidence: float = 0.7, valence: float | None = None,
            arousal: float | None = None, speaker: str | None = None) -> events.Event:
    """An utterance.emotion event whose top class is ``label`` with ``confidence``."""
    rest = (1.0 - confidence) / (len(LABELS) - 1)
    probabilities = {name: confidence if name == label else rest for name in LABELS}
    step = (t_end - t_start) / max(1, len(text.split()))
    words = tuple(Word(w, i * step, (i + 1) * step, 0.9) for i, w in enumerate(text.split()))
    result = EmotionResult(label, probabilities, confidence, MODEL_ID, valence=valence,
                           arousal=arousal)
    latency = events.Latency(300.0, 2.0, 180.0, 12.0, 494.0)
    return checked(events.utterance_emotion(stream, channel, index, t_start, t_end, "pause",
                                            Transcript(text, words, "en"), result, latency,
                                            speaker=speaker))


def checked(event: events.Event) -> events.Event:
    events.validate_event(event)
    return event


# (stream, channel, index, t_start, t_end, text, label, confidence, valence, arousal)
BILLING_CALL = [
    ("call-billing", "customer", 0, 0.4, 3.9,
     "I was charged twice for the same order.", "angry", 0.72, -0.6, 0.7),
    ("call-billing", "agent", 0, 4.3, 7.2,
     "I'm sorry about that, let me look at the payment.", "neutral", 0.81, 0.1, 0.3),
    ("call-billing", "customer", 1, 7.8, 10.5,
     "This is the third time I am calling.", "angry", 0.64, -0.7, 0.8),
    ("call-billing", "agent", 1, 11.0, 14.6,
     "I see it now, the refund is on its way today.", "neutral", 0.58, 0.3, 0.4),
    ("call-billing", "customer", 2, 15.1, 17.0,
     "Oh, great, thank you so much!", "happy", 0.77, 0.8, 0.6),
]
SUPPORT_CALL = [
    ("call-support", "customer", 0, 0.5, 3.0,
     "My internet has been down since yesterday.", "sad", 0.55, None, None),
    ("call-support", "agent", 0, 3.6, 6.1,
     "Let's restart the router together.", "neutral", 0.83, None, None),
]


def emotion_from_row(row: tuple) -> events.Event:  # type: ignore[type-arg]
    stream, channel, index, t0, t1, text, label, confidence, valence, arousal = row
    return emotion(stream, channel, index, t0, t1, text, label, confidence, valence, arousal)
