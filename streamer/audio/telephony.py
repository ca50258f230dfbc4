"""Telephone audio at the edge: G.711 mu-law (PCMU) <-> 16-bit PCM, and 8 kHz -> 16 kHz.

Decoding is one numpy lookup table of 256 entries (ITU-T G.711, the same values as the
deprecated ``audioop.ulaw2lin``); encoding is the standard biased-segment algorithm,
vectorised. ``ChannelUpsampler`` turns one party's 8 kHz samples into 16 kHz
``AudioChunk``s of a fixed size with running timestamps, so each party is resampled
exactly once, where the audio enters.
"""

from __future__ import annotations

import numpy as np

from models.audio import SAMPLE_RATE
from streamer.audio.audio_io import MonoResampler
from streamer.core.messages import AudioChunk

TELEPHONY_RATE = 8000
_BIAS = 0x84
_CLIP14 = 8159
_BIAS14 = 0x21


def _build_ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


ULAW_TO_PCM16: np.ndarray = _build_ulaw_table()  # (256,) int16, read-only
ULAW_TO_PCM16.setflags(write=False)


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> (N,) int16."""
    return ULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """(N,) int16 (or float in [-1, 1]) -> mu-law bytes (G.711 on the 14-bit magnitude)."""
    if samples.dtype.kind == "f":
        samples = np.clip(np.round(samples * 32767.0), -32768, 32767)
    v = samples.astype(np.int32) >> 2  # 14-bit, rounding towards -inf as G.711 does
    negative = v < 0
    v = np.minimum(np.where(negative, -v, v), _CLIP14) + _BIAS14  # 33 .. 8192
    bits = np.floor(np.log2(v)).astype(np.int32) + 1
    segment = bits - 6  # 0 .. 8; 8 = beyond the last segment (clipped)
    mantissa = (v >> (np.clip(segment, 0, 7) + 1)) & 0x0F
    codes = np.where(segment >= 8, 0x7F, (np.clip(segment, 0, 7) << 4) | mantissa)
    codes = codes ^ np.where(negative, 0x7F, 0xFF)
    return codes.astype(np.uint8).tobytes()


def pcm16_to_unit(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1)."""
    return samples.astype(np.float32) / 32768.0


class ChannelUpsampler:
    """One party's audio: any rate in, 16 kHz ``AudioChunk``s of ``chunk_ms`` out.

    Sans-I/O: ``push`` returns the chunks that are complete; ``flush`` returns the rest.
    """

    def __init__(self, stream_id: str, channel: str, in_rate: int, chunk_ms: int) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self._in_rate = in_rate
        self._resampler = MonoResampler(in_rate)
        self._chunk = int(SAMPLE_RATE * chunk_ms / 1000)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._emitted = 0

    def push(self, samples: np.ndarray) -> list[AudioChunk]:
        """``samples``: (N,) float32 at the input rate."""
        return self._cut(self._resampler.push(samples), final=False)

    def flush(self) -> list[AudioChunk]:
        """End of the audio: everything, the resampler's tail included."""
        return self._cut(self._resampler.push(np.zeros(0, dtype=np.float32), last=True),
                         final=True)

    def drain(self) -> list[AudioChunk]:
        """A pause in the audio: everything so far; audio after it starts a new resampler
        (a pause is a discontinuity, so the filter's state is not carried over)."""
        chunks = self.flush()
        self._resampler = MonoResampler(self._in_rate)
        return chunks

    def _cut(self, block: np.ndarray, final: bool) -> list[AudioChunk]:
        if len(block):
            self._buffer = np.concatenate([self._buffer, block.astype(np.float32, copy=False)])
        chunks: list[AudioChunk] = []
        while len(self._buffer) >= self._chunk or (final and len(self._buffer)):
            piece = self._buffer[: self._chunk]
            self._buffer = self._buffer[len(piece):]
            chunks.append(AudioChunk(self.stream_id, self.channel, piece,
                                     self._emitted / SAMPLE_RATE))
            self._emitted += len(piece)
        return chunks

    @property
    def seconds(self) -> float:
        """Audio emitted so far, in seconds of stream time."""
        return self._emitted / SAMPLE_RATE
