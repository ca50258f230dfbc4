"""Abstain on non-speech and unusable audio: no emotion claim for noise, tones or NaN.

The voice activity detector lets through much that is not speech (noise, music,
tones, clicks). An emotion label on such an utterance means nothing, so each
utterance passes two checks, with what is computed anyway:

- before the ASR (``check_audio``): the samples are finite, loud enough, not clipped;
- after the ASR (``check_transcript``): Whisper heard words; where it doubted there was
  speech at all (high no-speech probability) the words are likely and more than one
  (noise makes tiny.en say "You"); and it did not loop (tones make it repeat a phrase,
  "Beep Beep Beep ...", a highly compressible text).

An utterance that fails is published as ``utterance.emotion`` with ``speech: false``,
``label: "unknown"``, no probabilities and the reason in ``abstain_reason``; the fusion
model is not run on it and it does not enter the context of later utterances.
``stream.ended`` counts them (``nonspeech_utterances``). Sans-I/O: plain functions of
the audio and the transcript.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from models.asr import Transcript, normalize_words
from streamer.core.config import GateConfig

AbstainReason = Literal["invalid_audio", "too_quiet", "clipped", "no_speech", "no_words",
                        "repetitive_text"]
REASONS: tuple[AbstainReason, ...] = get_args(AbstainReason)  # the schema's enum (tested)
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    if len(audio) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def check_audio(audio: np.ndarray, config: GateConfig) -> AbstainReason | None:
    """Reason to abstain before transcribing, or None when the audio is usable."""
    if not config.enabled:
        return None
    if len(audio) == 0 or not bool(np.isfinite(audio).all()):
        return "invalid_audio"
    # DC offset is not loudness: measure around the mean.
    if rms_dbfs(audio - float(np.mean(audio))) < config.min_rms_dbfs:
        return "too_quiet"
    if float(np.mean(np.abs(audio) >= CLIP_LEVEL)) > config.max_clipped_fraction:
        return "clipped"
    return None


def check_transcript(transcript: Transcript, config: GateConfig) -> AbstainReason | None:
    """Reason to abstain after transcribing, or None when Whisper heard speech."""
    if not config.enabled:
        return None
    doubtful = transcript.no_speech_prob is not None \
        and transcript.no_speech_prob > config.max_no_speech_prob
    if doubtful and ((transcript.avg_logprob is not None
                      and transcript.avg_logprob <= config.min_avg_logprob)
                     or len(transcript.text.split()) < config.min_words_if_doubtful):
        return "no_speech"
    if config.require_words and not normalize_words(transcript.text):  # "" or "." or "..."
        return "no_words"
    if transcript.compression_ratio is not None \
            and transcript.compression_ratio > config.max_compression_ratio:
        return "repetitive_text"
    return None


MAX_NGRAM = 6  # longest phrase looked for as a loop


def repeated_ngram(text: str, min_repeats: int = 3) -> tuple[str, int] | None:
    """The first phrase of 1..``MAX_NGRAM`` words said ``min_repeats`` times in a row (single
    words: one more, "no, no, no" is speech), with its count; None when there is none.

    Short loops ("Any z. Any z. Any z.") compress too little for the compression-ratio
    rule, so the words themselves are checked."""
    words = normalize_words(text)
    for n in range(1, MAX_NGRAM + 1):
        need = min_repeats + 1 if n == 1 else min_repeats
        for start in range(0, len(words) - n * need + 1):
            phrase = words[start:start + n]
            count = 1
            while words[start + count * n:start + (count + 1) * n] == phrase:
                count += 1
            if count >= need:
                return " ".join(phrase), count
    return None


def looks_looped(transcript: Transcript, config: GateConfig, min_repeats: int = 3) -> bool:
    """Whisper repeating itself: the text compresses too well (its own hallucination rule)
    or a phrase repeats ``min_repeats`` times in a row."""
    if transcript.compression_ratio is not None \
            and transcript.compression_ratio > config.max_compression_ratio:
        return True
    return repeated_ngram(transcript.text, min_repeats) is not None
