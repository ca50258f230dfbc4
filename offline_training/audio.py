"""Reading an utterance's audio as 16 kHz mono float32."""

from __future__ import annotations

import numpy as np

from models.audio import SAMPLE_RATE
from offline_training.errors import CorpusError
from offline_training.records import Utterance

MAX_SECONDS = 30.0  # Whisper's window; longer utterances are cut (and reported by the caller)


def load_audio(utt: Utterance) -> np.ndarray:
    """(N,) float32 at 16 kHz; ``start``/``end`` select a segment; stereo is averaged."""
    import soundfile as sf
    import soxr

    try:
        audio, rate = sf.read(utt.path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:
        raise CorpusError(f"could not read audio '{utt.path}' of utterance '{utt.id}': {exc}") \
            from exc
    mono = audio.mean(axis=1)
    if utt.start is not None or utt.end is not None:
        first = int((utt.start or 0.0) * rate)
        last = int(utt.end * rate) if utt.end is not None else len(mono)
        mono = mono[first:last]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE).astype(np.float32)
    if len(mono) == 0:
        raise CorpusError(f"utterance '{utt.id}' has no audio (file '{utt.path}', "
                          f"start={utt.start}, end={utt.end})")
    return np.ascontiguousarray(mono[: int(MAX_SECONDS * SAMPLE_RATE)], dtype=np.float32)
