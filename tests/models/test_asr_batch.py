"""``AsrEngine.transcribe_batch`` gives each utterance the transcript ``transcribe`` gives it
(text, words and their times, the no-speech and log-probability evidence), on real speech of
mixed lengths, finals and partials; bench/experiments/asr_batch.py measures the cost."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from harness.speech import Turn, espeak_available, synthesize
from models.asr import AsrEngine, AsrOptions, Transcript
from models.audio import SAMPLE_RATE
from models.encoders.whisper import load_whisper
from streamer.engine.recognizer import AsrBatch, AsrRequest

# 8 acted RAVDESS clips of 4 speakers, and where each is
SAMPLE = Path(str(resources.files("streamer") / "assets" / "sample_ravdess.flac"))


def sample_ravdess_audio() -> list[np.ndarray]:
    audio, rate = sf.read(SAMPLE, dtype="float32")
    assert rate == SAMPLE_RATE
    spans = json.loads(SAMPLE.with_suffix(".json").read_text())
    return [audio[int(s["t_start"] * rate): int(s["t_end"] * rate)] for s in spans]


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")]


@pytest.fixture(scope="module")
def engine() -> AsrEngine:
    return AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=2))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Real RAVDESS speech (the bundled sample's clips), a synthesised long sentence, one
    over the 10 s window (transcribed alone) and silence."""
    ravdess = sample_ravdess_audio()
    long = synthesize(Turn("The weather was perfect every single day, so we stayed a whole "
                           "week longer than we had planned.", "en-us+m3", 50, 160))
    over = np.concatenate([long, np.zeros(SAMPLE_RATE * 4, np.float32), long])
    silence = np.zeros(SAMPLE_RATE, np.float32)
    return [*ravdess[:5], long, over, silence]


def encoder_widths(engine: AsrEngine) -> list[int]:
    """Records the mel width of each encoder call (faster-whisper's ``encode``); undo with
    ``del engine.model.encode``."""
    widths: list[int] = []
    real = engine.model.encode

    def counting(features: np.ndarray) -> Any:
        widths.append(int(np.shape(features)[0]) if np.ndim(features) == 3 else 1)
        return real(features)

    engine.model.encode = counting
    return widths


def assert_same(a: Transcript, b: Transcript) -> None:
    assert a.text == b.text
    assert [w.word for w in a.words] == [w.word for w in b.words]
    # Word times within one alignment step (20 ms): the batch pads the decoder's text
    # tokens, which can move the attention's best path by a frame.
    np.testing.assert_allclose([(w.start, w.end) for w in a.words] or [[0, 0]],
                               [(w.start, w.end) for w in b.words] or [[0, 0]], atol=0.021)
    np.testing.assert_allclose([w.probability for w in a.words], [w.probability for w in b.words],
                               atol=1e-3)
    for x, y in ((a.no_speech_prob, b.no_speech_prob), (a.avg_logprob, b.avg_logprob)):
        assert (x is None) == (y is None) and (x is None or abs(x - (y or 0.0)) < 1e-3)
    assert a.encoder_frames is not None and b.encoder_frames is not None
    assert a.encoder_frames.shape == b.encoder_frames.shape
    np.testing.assert_allclose(a.encoder_frames, b.encoder_frames, atol=1e-3)


@pytest.mark.parametrize("final", [True, False])
def test_batch_gives_each_utterance_its_own_transcript(engine: AsrEngine,
                                                       clips: list[np.ndarray],
                                                       final: bool) -> None:
    alone = [engine.transcribe(c, final=final) for c in clips]
    batches = encoder_widths(engine)
    try:
        together = engine.transcribe_batch(clips, final=final)
    finally:
        del engine.model.encode
    # the 7 that fit in the window in one encoder call; the long one alone (30 s windows)
    assert sorted(batches)[-1] == 7 and set(sorted(batches)[:-1]) == {1}
    assert len(together) == len(clips)
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    assert alone[0].text and (not final or alone[0].words)  # real words, timed when final


def test_asr_batch_groups_finals_and_partials(engine: AsrEngine,
                                              clips: list[np.ndarray]) -> None:
    requests = [AsrRequest(clips[0], final=True), AsrRequest(clips[1], final=False),
                AsrRequest(clips[2], final=True), AsrRequest(clips[5], final=False)]
    results = AsrBatch(engine)(requests)
    for request, result in zip(requests, results, strict=True):
        assert_same(engine.transcribe(request.audio, final=request.final), result)
    assert results[0].words and not results[1].words  # partials carry no word times
