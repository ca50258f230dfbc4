"""mu-law against known G.711 values, and the 8 -> 16 kHz edge."""

from __future__ import annotations

import numpy as np

from streamer.audio.telephony import ChannelUpsampler, ulaw_decode, ulaw_encode

# (mu-law code, 16-bit PCM) pairs from the G.711 tables (audioop.ulaw2lin gives the same).
KNOWN = [(0x00, -32124), (0x80, 32124), (0x7F, 0), (0xFF, 0), (0x70, -120), (0xF0, 120),
         (0x0F, -16764), (0x8F, 16764), (0x3F, -1980), (0xBF, 1980), (0x5A, -556),
         (0xDA, 556)]


def test_decode_matches_known_pcm() -> None:
    codes = bytes(c for c, _ in KNOWN)
    assert ulaw_decode(codes).tolist() == [v for _, v in KNOWN]


def test_decode_table_is_monotonic_per_sign() -> None:
    table = ulaw_decode(bytes(range(256))).astype(int)
    assert np.all(np.diff(table[:128]) > 0)  # 0x00 (most negative) .. 0x7F (zero)
    assert np.all(np.diff(table[128:]) < 0)  # 0x80 (most positive) .. 0xFF (zero)


def test_encode_inverts_decode_for_every_code() -> None:
    table = ulaw_decode(bytes(range(256)))
    codes = np.frombuffer(ulaw_encode(table), dtype=np.uint8)
    # 0x7F and 0xFF both mean zero; everything else round-trips exactly.
    assert [c for c in range(256) if codes[c] != c] == [0x7F]


def test_encode_error_is_within_half_a_step() -> None:
    x = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = ulaw_decode(ulaw_encode(x)).astype(int)
    err = np.abs(back - x.astype(int))
    step = np.maximum(8, np.abs(x.astype(int)) // 16)  # segment step ~ |x| / 16
    assert np.all(err <= step + 132)


def test_upsampler_emits_fixed_16k_chunks_with_timestamps() -> None:
    up = ChannelUpsampler("s", "customer", 8000, chunk_ms=100)
    t = np.arange(8000 * 2) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunks = []
    for i in range(0, len(tone), 160):  # 20 ms telephony frames
        chunks += up.push(tone[i:i + 160])
    chunks += up.flush()
    assert all(len(c.samples) == 1600 for c in chunks[:-1])
    assert [round(c.t_start, 3) for c in chunks[:3]] == [0.0, 0.1, 0.2]
    total = sum(len(c.samples) for c in chunks)
    assert abs(total - 32000) <= 32
    audio = np.concatenate([c.samples for c in chunks])
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2  # still a 440 Hz tone
