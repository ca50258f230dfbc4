"""VoiceMemory (streamer/engine/voice_memory.py): the voices a channel's change detector
has embedded, and its evidence that two windows are two of them. Sans-I/O: embeddings
drawn around two fixed voices, as CAM++ gives around each speaker."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.config import ConfigError, load_config
from streamer.engine.voice_memory import VoiceMemory

DIM = 192  # CAM++'s embedding width


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def voices(seed: int, closeness: float) -> tuple[np.ndarray, np.ndarray]:
    """Two voices' centres whose cosine is about ``closeness``."""
    rng = np.random.default_rng(seed)
    a = unit(rng.standard_normal(DIM))
    b = unit(closeness * a + np.sqrt(1 - closeness**2) * unit(rng.standard_normal(DIM)))
    return a, b


def window(centre: np.ndarray, rng: np.random.Generator, spread: float = 0.9) -> np.ndarray:
    """One window of a voice: its centre plus as much noise as CAM++'s 1 s windows have
    (window-to-window cosine of one voice about 0.5)."""
    return unit(centre + spread * unit(rng.standard_normal(DIM)))


def test_no_evidence_until_two_voices_are_known() -> None:
    a, b = voices(0, 0.2)
    rng = np.random.default_rng(1)
    memory = VoiceMemory(threshold=0.3, min_windows=10, max_voices=4)
    x, y = window(a, rng), window(b, rng)
    assert memory.evidence(x, y) == 0.0
    for _ in range(30):  # one voice only: still nothing to tell apart
        memory.add(window(a, rng))
    assert memory.voices == 1 and memory.evidence(x, y) == 0.0
    for _ in range(9):
        memory.add(window(b, rng))
    assert memory.evidence(x, y) == 0.0  # the second voice has 9 of its 10 windows
    memory.add(window(b, rng))
    assert memory.voices == 2 and memory.evidence(x, y) > 0.0


def test_windows_of_two_voices_lie_apart_and_of_one_voice_do_not() -> None:
    """Once both voices are known, a window of each lies far further apart along the line
    between them than two windows of one voice."""
    a, b = voices(2, 0.3)
    rng = np.random.default_rng(3)
    memory = VoiceMemory(threshold=0.3, min_windows=10, max_voices=4)
    for _ in range(40):
        memory.add(window(a, rng))
        memory.add(window(b, rng))
    assert memory.voices == 2
    change = [memory.evidence(window(a, rng), window(b, rng)) for _ in range(200)]
    same = [memory.evidence(window(a, rng), window(a, rng)) for _ in range(200)]
    assert np.median(change) > 3 * np.median(same)
    assert np.mean(np.array(change) > np.percentile(same, 90)) > 0.6


def test_voices_are_capped_and_memory_is_bounded() -> None:
    rng = np.random.default_rng(4)
    memory = VoiceMemory(threshold=0.99, min_windows=1, max_voices=3)
    for _ in range(100):  # every window would be a new voice at 0.99
        memory.add(unit(rng.standard_normal(DIM)))
    assert memory.voices == 3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_evidence_is_symmetric_and_bounded(seed: int) -> None:
    """|(x - y) . axis| with a unit axis: at most |x - y| <= 2, the same either way round."""
    rng = np.random.default_rng(seed)
    memory = VoiceMemory(threshold=0.5, min_windows=2, max_voices=4)
    for _ in range(12):
        memory.add(unit(rng.standard_normal(DIM)))
    x, y = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    assert memory.evidence(x, y) == pytest.approx(memory.evidence(y, x))
    assert 0.0 <= memory.evidence(x, y) <= float(np.linalg.norm(x - y)) + 1e-6


def test_bad_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="threshold must be a cosine"):
        VoiceMemory(threshold=2.0, min_windows=10, max_voices=4)
    with pytest.raises(ValueError, match="max_voices >= 2"):
        VoiceMemory(threshold=0.3, min_windows=10, max_voices=1)
    with pytest.raises(ConfigError, match="memory_weight must be >= 0"):
        load_config(None, ["speakers.memory_weight=-1"])
    with pytest.raises(ConfigError, match="memory_threshold"):
        load_config(None, ["speakers.memory_threshold=1.5"])
