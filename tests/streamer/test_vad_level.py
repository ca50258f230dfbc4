"""The VAD's level control (segmenter.vad_gain_max_db, streamer/audio/vad_level.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.audio import SAMPLE_RATE
from streamer.audio.audio_io import read_audio_file
from streamer.audio.segmenter import Segmenter
from streamer.audio.vad_level import VadLevel, frame_dbfs
from streamer.core.config import ConfigError, SegmenterConfig, load_config
from streamer.core.messages import Utterance

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
FRAME = 480  # 30 ms
GAIN = 10 ** (-10 / 20)


def frames(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i:i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]


def at_dbfs(frame: np.ndarray, dbfs: float) -> np.ndarray:
    return (frame / np.sqrt(np.mean(np.square(frame))) * 10 ** (dbfs / 20)).astype(np.float32)


def test_loud_streams_and_steady_noise_get_no_gain() -> None:
    rng = np.random.default_rng(0)
    level = VadLevel(target_dbfs=-40, max_gain_db=20, window_frames=100)
    noise = [at_dbfs(rng.standard_normal(FRAME), -70) for _ in range(50)]
    assert [level.gain(f) for f in noise] == [1.0] * 50  # quiet, but nothing stands out
    loud = VadLevel(target_dbfs=-40, max_gain_db=20, window_frames=100)
    assert all(loud.gain(at_dbfs(rng.standard_normal(FRAME), db)) == 1.0
               for db in (-70, -30, -70, -35))  # its loudest frame is above the target
    silence = VadLevel(target_dbfs=-40, max_gain_db=20, window_frames=100)
    assert silence.gain(np.zeros(FRAME, np.float32)) == 1.0


def test_quiet_speech_over_noise_is_raised_to_the_target_within_the_cap() -> None:
    rng = np.random.default_rng(1)
    level = VadLevel(target_dbfs=-40, max_gain_db=20, window_frames=100)
    for _ in range(30):
        level.gain(at_dbfs(rng.standard_normal(FRAME), -80))
    gain = level.gain(at_dbfs(rng.standard_normal(FRAME), -52))  # 28 dB above the floor
    assert 20 * np.log10(gain) == pytest.approx(12.0, abs=0.01)
    gain = level.gain(at_dbfs(rng.standard_normal(FRAME), -70))  # the loudest still counts
    assert 20 * np.log10(gain) == pytest.approx(12.0, abs=0.01)
    faint = VadLevel(target_dbfs=-40, max_gain_db=20, window_frames=100)
    for _ in range(30):
        faint.gain(at_dbfs(rng.standard_normal(FRAME), -100))
    assert 20 * np.log10(faint.gain(at_dbfs(rng.standard_normal(FRAME), -75))) == \
        pytest.approx(20.0)  # capped
    assert frame_dbfs(np.full(FRAME, 0.5, np.float32)) == -120.0  # DC alone is silence


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="vad_gain_max_db must be 0..40"):
        load_config(None, ["segmenter.vad_gain_max_db=-3"])
    with pytest.raises(ConfigError, match="vad_target_dbfs must be <= 0"):
        load_config(None, ["segmenter.vad_target_dbfs=6"])


def segment(audio: np.ndarray, config: SegmenterConfig, chunk: int) -> list[tuple[float, float]]:
    segmenter = Segmenter(config)
    events = [e for i in range(0, len(audio), chunk) for e in segmenter.push(audio[i:i + chunk])]
    return [(u.t_start, u.t_end) for u in events + segmenter.flush() if isinstance(u, Utterance)]


@pytest.mark.needs_corpus("ravdess")
def test_the_vad_finds_quiet_speech_it_missed() -> None:
    """Four takes of actor 20 (held out, calm and sad, -58 to -63 dBFS), played 10 dB
    quieter with 1.5 s between them: without the level control the VAD opens none (webrtcvad's
    energy floor); with it, one per take, at every chunk size (live equals offline)."""
    takes = ("03-01-02-02-02-02-20", "03-01-04-01-01-02-20", "03-01-02-02-01-02-20",
             "03-01-04-01-02-01-20")
    gap = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    rng = np.random.default_rng(2)
    audio = np.concatenate([gap, *[p for t in takes for p in (
        GAIN * read_audio_file(RAVDESS / "Actor_20" / f"{t}.flac"), gap)]])
    audio = (audio + at_dbfs(rng.standard_normal(len(audio)), -90)).astype(np.float32)
    assert segment(audio, SegmenterConfig(), 480) == []
    raised = SegmenterConfig(vad_gain_max_db=20)
    spans = segment(audio, raised, 480)
    assert len(spans) == len(takes), spans
    assert all(segment(audio, raised, chunk) == spans for chunk in (160, 1000, 16000))
