"""Per-utterance language with the packaged multilingual Whisper base: detected from the
encoder pass the transcript uses, decoded in that language, and reported."""

from __future__ import annotations

import numpy as np
import pytest

from harness.speech import Turn, synthesize
from models.asr import AsrEngine, AsrOptions
from models.encoders.whisper import load_whisper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model():  # noqa: ANN201
    return load_whisper("packaged:base", cpu_threads=2)


def test_language_is_detected_per_utterance(base_model) -> None:  # noqa: ANN001
    engine = AsrEngine(AsrOptions(language=None), base_model)
    german = engine.transcribe(synthesize(Turn("Guten Morgen, ich habe heute keine Zeit für dich.",
                                               voice="de")))
    english = engine.transcribe(synthesize(Turn("Good morning, I have no time for you today.")))
    assert german.language == "de" and english.language == "en"
    assert german.language_prob is not None and 0.5 < german.language_prob <= 1.0
    assert "zeit" in german.text.lower()


def test_configured_language_is_not_detected(base_model) -> None:  # noqa: ANN001
    engine = AsrEngine(AsrOptions(language="en"), base_model)
    out = engine.transcribe(synthesize(Turn("Good morning, I have no time for you today.")))
    assert out.language == "en" and out.language_prob is None


def test_english_only_model_reports_english() -> None:
    engine = AsrEngine(AsrOptions(language=None), load_whisper("packaged:tiny.en"))
    out = engine.transcribe(np.zeros(16000, dtype=np.float32) + 1e-4)
    assert out.language == "en" and out.language_prob is None
