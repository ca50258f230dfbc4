"""Decoding and resampling at the source edge, and the file/stdin sources."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.audio.audio_io import read_audio_file
from streamer.core.config import SourceConfig
from streamer.core.errors import AudioInputError
from streamer.sources.local import FileSource, MicSource, StdinSource


def sine(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(("fmt", "rate", "channels"), [
    ("wav", 48000, 2), ("flac", 22050, 1), ("ogg", 44100, 2), ("mp3", 44100, 1),
    ("wav", 8000, 1),
])
def test_any_format_rate_and_channels_become_16k_mono(tmp_path: Path, fmt: str, rate: int,
                                                      channels: int) -> None:
    path = tmp_path / f"x.{fmt}"
    sf.write(str(path), sine(rate, 2.0, channels), rate)
    audio = read_audio_file(path)
    assert audio.ndim == 1 and audio.dtype == np.float32
    # MP3 encoders add a little padding; the rest must be exact to a few ms.
    assert abs(len(audio) - 32000) < (2000 if fmt == "mp3" else 50)
    # Still a 440 Hz tone after resampling.
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 5


def test_truncated_wav_keeps_what_is_there(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "full.wav"
    sf.write(str(path), sine(16000, 2.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 16000 * 2])  # header promises 2 s, 1 s is there
    with caplog.at_level(logging.WARNING):
        audio = read_audio_file(cut)
    assert len(audio) == pytest.approx(16000, abs=10)
    assert "truncated" in caplog.text


def test_non_audio_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioInputError, match="cannot decode .* as audio"):
        read_audio_file(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="does not exist"):
        FileSource(SourceConfig(path=str(tmp_path / "nope.wav")))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty"):
        FileSource(SourceConfig(path=str(tmp_path / "empty.wav")))


async def collect(source: FileSource | StdinSource) -> np.ndarray:
    chunks = [c async for c in source.chunks()]
    starts = [c.t_start for c in chunks]
    assert starts == sorted(starts)
    return np.concatenate([c.samples for c in chunks])


async def test_file_source_fast_replay_yields_all_audio(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(str(path), sine(44100, 1.5, 2), 44100)
    audio = await collect(FileSource(SourceConfig(path=str(path), realtime=False)))
    assert abs(len(audio) - 24000) < 50


async def test_file_source_realtime_is_paced(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(str(path), sine(16000, 1.0), 16000)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await collect(FileSource(SourceConfig(path=str(path), realtime=True)))
    fast_t0 = loop.time()
    await collect(FileSource(SourceConfig(path=str(path), realtime=False)))
    # Paced replay takes about the audio's duration; fast replay a small fraction of it.
    assert (fast_t0 - t0) > 5 * (loop.time() - fast_t0)


async def test_stdin_pcm_with_declared_rate_and_channels() -> None:
    stereo = (sine(8000, 1.0, 2) * 32767).astype("<i2")
    raw = io.BytesIO(stereo.tobytes() + b"\x01")  # a stray trailing byte is ignored
    cfg = SourceConfig(kind="stdin", stdin_sample_rate=8000, stdin_channels=2)
    audio = await collect(StdinSource(cfg, stream=raw))
    assert abs(len(audio) - 16000) < 50


def test_microphone_without_input_device_says_what_to_do() -> None:
    import sounddevice as sd

    try:
        has_input = any(d["max_input_channels"] > 0 for d in sd.query_devices())
    except sd.PortAudioError:
        has_input = False
    if has_input:
        pytest.skip("this machine has a microphone")
    with pytest.raises(AudioInputError, match="no audio input device|no usable microphone"):
        MicSource(SourceConfig(kind="mic"))
