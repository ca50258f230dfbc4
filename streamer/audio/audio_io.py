"""Audio decoding and resampling at the source edge: anything in, 16 kHz mono float32 out.

Decoding is libsndfile (soundfile: wav, flac, ogg, mp3, ...); resampling is
libsoxr (soxr), streamed so that long files and live input are converted in
one pass without holding everything in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.audio import SAMPLE_RATE
from streamer.core.errors import AudioInputError

log = logging.getLogger(__name__)

SUPPORTED_HINT = "wav, flac, ogg/vorbis, mp3 or any other format libsndfile reads"


def to_mono(block: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) -> (N,) float32 by averaging channels."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    mono: np.ndarray = block.mean(axis=1, dtype=np.float32)
    return mono


class MonoResampler:
    """Streaming channel mix + resample to 16 kHz mono (one soxr stream per source)."""

    def __init__(self, in_rate: int) -> None:
        if in_rate <= 0:
            raise AudioInputError(f"sample rate must be positive, got {in_rate}")
        self.in_rate = in_rate
        self._stream = (
            None if in_rate == SAMPLE_RATE
            else soxr.ResampleStream(in_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        mono = to_mono(block)
        if self._stream is None:
            return mono
        out: np.ndarray = self._stream.resample_chunk(mono, last=last)
        return out


class Resampler:
    """Streaming resample of (N, C) blocks to 16 kHz, channels kept (one soxr stream)."""

    def __init__(self, in_rate: int, channels: int) -> None:
        if in_rate <= 0:
            raise AudioInputError(f"sample rate must be positive, got {in_rate}")
        if channels < 1:
            raise AudioInputError(f"channel count must be >= 1, got {channels}")
        self.in_rate = in_rate
        self.channels = channels
        self._stream = (
            None if in_rate == SAMPLE_RATE
            else soxr.ResampleStream(in_rate, SAMPLE_RATE, channels, dtype="float32",
                                     quality="HQ")
        )

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """(N, C) float32 at ``in_rate`` -> (M, C) float32 at 16 kHz."""
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}) audio, got {block.shape}")
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self._stream is None:
            return block
        out: np.ndarray = self._stream.resample_chunk(block, last=last)
        return out.reshape(-1, self.channels)


def file_channels(path: str | Path) -> int:
    """How many channels the audio file has."""
    with open_audio_file(path) as f:
        return int(f.channels)


def open_audio_file(path: str | Path) -> sf.SoundFile:
    """Open an audio file, turning libsndfile errors into a message a user can act on."""
    p = Path(path)
    if not p.is_file():
        raise AudioInputError(f"audio file '{p}' does not exist; check the path")
    if p.stat().st_size == 0:
        raise AudioInputError(f"audio file '{p}' is empty (0 bytes)")
    try:
        return sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(
            f"cannot decode '{p}' as audio ({exc}); expected {SUPPORTED_HINT}. "
            "Convert it first, e.g. ffmpeg -i input -ar 16000 -ac 1 out.wav"
        ) from exc


def iter_file_blocks(path: str | Path, block_s: float,
                     keep_channels: bool = False) -> Iterator[np.ndarray]:
    """Yield 16 kHz mono float32 blocks of about ``block_s`` seconds from an audio file;
    with ``keep_channels``, (N, C) blocks with the file's channels kept apart.

    A truncated file (header promises more data than there is) yields what is
    there and logs a warning: audio that can be decoded is never thrown away.
    """
    with open_audio_file(path) as f:
        resampler: MonoResampler | Resampler = (
            Resampler(f.samplerate, f.channels) if keep_channels else MonoResampler(f.samplerate))
        frames_per_block = max(1, int(f.samplerate * block_s))
        read_total = 0
        while True:
            try:
                block = f.read(frames_per_block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioInputError(
                    f"decoding '{path}' failed after {read_total / f.samplerate:.2f} s: {exc}"
                ) from exc
            last = len(block) < frames_per_block
            read_total += len(block)
            out = resampler.push(block, last=last)
            if len(out):
                yield out
            if last:
                break
        # libsndfile trims a short file's length to what is there and notes the mismatch
        # ("data : 64000 (should be 32000)") in the header dump.
        mismatches = [line.strip() for line in f.extra_info.splitlines() if "should be" in line]
        if mismatches:
            log.warning(
                "audio file '%s' looks truncated or damaged (%s); using the %.2f s that could "
                "be read", path, "; ".join(mismatches), read_total / f.samplerate,
            )


def read_audio_file(path: str | Path) -> np.ndarray:
    """Decode a whole file to 16 kHz mono float32."""
    blocks = list(iter_file_blocks(path, block_s=10.0))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def pcm16_to_float(data: bytes, channels: int) -> np.ndarray:
    """Little-endian int16 interleaved PCM -> (N, C) float32."""
    usable = len(data) - len(data) % (2 * channels)
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels)
