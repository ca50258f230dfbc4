"""AsrEngine decodes an utterance from its one encoder pass: faster-whisper's seek loop does
not go on to encode the utterance's tail again in a 30 s window (bench/experiments/asr_seek.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.speech import Turn, conversation, espeak_available
from models.asr import AsrEngine, AsrOptions
from models.encoders.whisper import load_whisper
from streamer.audio.segmenter import Segmenter
from streamer.core.config import SegmenterConfig
from streamer.core.messages import Utterance

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")]

# A 9 s sentence as the served segmenter cuts it: tiny.en's first window ends it without a
# lone closing timestamp, so faster-whisper seeks to the last word and encodes the ~30 ms
# after it in a second (30 s) window, which decodes nothing.
SENTENCE = Turn("We went to the beach last summer and the weather was perfect every single day, "
                "so we stayed a whole week longer than we had planned, and the children loved it.",
                "en-us+f2", 50, 170)


@pytest.fixture(scope="module")
def whisper() -> Any:
    return load_whisper("packaged:tiny.en", cpu_threads=2)


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    segmenter = Segmenter(SegmenterConfig())
    audio = conversation([SENTENCE], gap_s=0.0, lead_s=0.6)
    cuts = [e for e in segmenter.push(audio) + segmenter.flush() if isinstance(e, Utterance)]
    assert len(cuts) == 1
    return cuts[0].audio


def encoder_windows(whisper: Any, engine: AsrEngine, audio: np.ndarray, final: bool = True
                    ) -> tuple[str, list[int]]:
    """The transcript and the mel width of every encoder call it made."""
    widths: list[int] = []
    real = whisper.encode

    def counting(features: np.ndarray) -> Any:
        widths.append(int(np.shape(features)[-1]))
        return real(features)

    whisper.encode = counting
    try:
        return engine.transcribe(audio, final=final).text, widths
    finally:
        del whisper.encode  # the class's method again


def test_utterance_is_encoded_once(whisper: Any, utterance: np.ndarray) -> None:
    text, widths = encoder_windows(whisper, AsrEngine(AsrOptions(), whisper), utterance)
    assert widths == [1000]  # the 10 s window only
    assert "children loved it" in text.lower()


def test_the_second_window_added_nothing(whisper: Any, utterance: np.ndarray) -> None:
    seek_loop = AsrEngine(AsrOptions(first_window_only=False), whisper)
    text_loop, widths_loop = encoder_windows(whisper, seek_loop, utterance)
    assert widths_loop == [1000, 3000]  # what faster-whisper's loop does with this clip
    text, _ = encoder_windows(whisper, AsrEngine(AsrOptions(), whisper), utterance)
    assert text == text_loop


def test_longer_than_30s_still_decodes_every_window(whisper: Any) -> None:
    # first_window_only applies to audio that fits in the first window; beyond it the seek
    # loop goes on (the segmenter cuts at 15 s, so the streamer never gets here).
    audio = np.concatenate([np.zeros(16000 * 31, dtype=np.float32),
                            conversation([SENTENCE], gap_s=0.0, lead_s=0.3)])
    text, widths = encoder_windows(whisper, AsrEngine(AsrOptions(), whisper), audio)
    assert len(widths) >= 2 and "children" in text.lower()
