"""Transcription with faster-whisper, encoding each utterance once.

``AsrEngine.transcribe`` encodes the utterance once in a padded window (10 s
when it fits, else Whisper's 30 s: shorter windows break tiny.en's decoding,
see docs/performance-asr.md), decodes from that encoder output, and returns the
encoder frames of the utterance itself so that the emotion stage does not
encode the audio a second time.

``Transcript`` and ``Word`` are the one transcript type: the streamer's events,
the emotion model's word times and the trainer's transcript cache all use them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from models.encoders.whisper import (
    DEFAULT_WINDOW_S,
    WINDOW_FRAMES,
    WhisperEncoder,
    WhisperEncoding,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the utterance start (not stream time)
    end: float
    probability: float = 1.0  # 1.0 for gold transcripts, which have no ASR confidence


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = ()
    language: str | None = None  # the language decoded in (detected when asr.language is null)
    language_prob: float | None = None  # Whisper's probability of it when it was detected
    # Whisper encoder output for the utterance's own frames, (T, D) float32; reused for emotion.
    encoder_frames: np.ndarray | None = field(default=None, repr=False)
    # Whisper's own evidence that this was speech (None for gold text): the highest
    # no-speech probability of its windows and the token-weighted mean log-probability.
    no_speech_prob: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None  # highest of its segments (loops compress well)


@dataclass(frozen=True)
class AsrOptions:
    """Decoding settings (the streamer's ``asr`` config section maps onto these)."""

    language: str | None = "en"
    beam_size: int = 1
    max_new_tokens: int = 128
    window_s: float = DEFAULT_WINDOW_S
    word_timestamps: bool = True
    # Decode only the first window (see _first_window_segments); False: faster-whisper's own
    # seek loop, which may encode and decode the utterance's tail again in a 30 s window.
    first_window_only: bool = True


class AsrEngine:
    """Blocking ASR on one loaded WhisperModel; call from a worker thread, one call at a time."""

    def __init__(self, config: AsrOptions, whisper_model: Any) -> None:
        self.config = config
        self.model = whisper_model
        self.encoder = WhisperEncoder(whisper_model)
        multilingual = bool(whisper_model.model.is_multilingual)
        # English-only models decode English; a multilingual one decodes the configured
        # language, or detects it per utterance from the same encoder pass when it is None.
        language = config.language if multilingual else "en"
        self.detect = multilingual and language is None
        self._tokenizers: dict[str, Any] = {}
        self._tokenizer_args = (whisper_model.hf_tokenizer, multilingual)
        self.tokenizer = self._tokenizer(language or "en")
        self.language = language

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(*self._tokenizer_args, task="transcribe",
                                                   language=language)
        return self._tokenizers[language]

    def _options(self, word_timestamps: bool) -> Any:
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        c = self.config
        return TranscriptionOptions(
            beam_size=c.beam_size, best_of=1, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, log_prob_threshold=-1.0,
            # No skipping inside faster-whisper: transcribe() applies the same rule itself
            # so that the no-speech evidence is kept (streamer.audio.speech_gate uses it).
            no_speech_threshold=None, compression_ratio_threshold=2.4,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
            # One temperature: a fallback re-decode would double the worst-case latency.
            temperatures=[0.0], initial_prompt=None, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(self.tokenizer, [-1]),
            without_timestamps=not word_timestamps, max_initial_timestamp=1.0,
            word_timestamps=word_timestamps, prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、", multilingual=False,
            max_new_tokens=c.max_new_tokens, clip_timestamps="0",
            hallucination_silence_threshold=None, hotwords=None,
        )

    def _segments(self, encoding: WhisperEncoding, tokenizer: Any,
                  word_timestamps: bool) -> list[Any]:
        args = (encoding.features, tokenizer, self._options(word_timestamps), False,
                encoding.storage)
        # features carry one frame more than the content (faster-whisper drops it too)
        if self.config.first_window_only and encoding.features.shape[-1] - 1 <= WINDOW_FRAMES:
            return _first_window_segments(self.model, *args)
        return list(self.model.generate_segments(*args))

    def transcribe(self, audio: np.ndarray, final: bool = True) -> Transcript:
        """Transcribe one utterance (<= 30 s). Partials skip word timestamps (cheaper)."""
        encoding = self.encoder.encode(audio, self.config.window_s)
        word_ts = final and self.config.word_timestamps
        language, language_prob, tokenizer = self.language, None, self.tokenizer
        if self.detect:  # from the encoder output already computed: no second encoder pass
            token, language_prob = self.model.model.detect_language(encoding.storage)[0][0]
            language = token[2:-2]  # '<|de|>' -> 'de'
            tokenizer = self._tokenizer(language)
        try:
            segments = self._segments(encoding, tokenizer, word_ts)
        except IndexError as exc:
            if not word_ts:
                raise
            # faster-whisper's word alignment fails on some audio (an IndexError inside
            # find_alignment): keep the transcript, without word times, rather than lose the
            # utterance; consumers spread words evenly when the ASR gives none.
            LOG.warning("word alignment failed (%s); transcribing this utterance without "
                        "word timestamps", exc)
            segments = self._segments(encoding, tokenizer, False)
        texts: list[str] = []
        words: list[Word] = []
        no_speech, logprob_sum, n_tokens, compression = 0.0, 0.0, 0, 0.0
        for segment in segments:
            no_speech = max(no_speech, float(segment.no_speech_prob))
            compression = max(compression, float(segment.compression_ratio))
            logprob_sum += float(segment.avg_logprob) * max(1, len(segment.tokens))
            n_tokens += max(1, len(segment.tokens))
            if is_silence(segment.no_speech_prob, segment.avg_logprob):
                continue  # what faster-whisper itself would have skipped
            texts.append(segment.text.strip())
            for w in segment.words or []:
                words.append(Word(w.word.strip(), float(w.start), float(w.end),
                                  float(w.probability)))
        return Transcript(
            text=" ".join(t for t in texts if t),
            words=tuple(words),
            language=language,
            language_prob=language_prob,
            encoder_frames=encoding.frames,
            no_speech_prob=no_speech if n_tokens else None,
            avg_logprob=logprob_sum / n_tokens if n_tokens else None,
            compression_ratio=compression if n_tokens else None,
        )


class _SecondWindow(Exception):
    pass


class _FirstWindowOnly:
    """The WhisperModel as ``generate_segments`` sees it in ``_first_window_segments``: the
    model's own attributes, except ``encode``. generate_segments encodes only to start a
    window after the first (the first decodes the encoder output it is given), so there this
    stops the generator instead."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: np.ndarray) -> Any:
        raise _SecondWindow


def _first_window_segments(model: Any, *args: Any) -> list[Any]:
    """faster-whisper's segments of the first window only, for an utterance that fits in it.

    Its seek loop goes on to another window whenever the first decode does not end on a lone
    timestamp (with word timestamps: it seeks to the last word's end) and encodes the rest,
    padded to 30 s. On served utterances that rest is a short silent tail: on 7 of 235
    (bench/experiments/asr_seek.py) it cost ~470 ms of CPU more (vs ~350 ms for a whole 9 s
    utterance), kept no word, and once decoded a hallucinated "Thank you." that only raised the
    transcript's no-speech probability (0.18 -> 0.75). Stopping a lazy iteration would be
    too late: the generator encodes the next window before it yields anything from it."""
    from faster_whisper import WhisperModel

    segments: list[Any] = []
    try:
        for segment in WhisperModel.generate_segments(cast(Any, _FirstWindowOnly(model)), *args):
            segments.append(segment)
    except _SecondWindow:
        pass
    return segments


NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


def is_silence(no_speech_prob: float, avg_logprob: float) -> bool:
    """Whisper's rule (faster-whisper's defaults): a window is silence when the no-speech
    probability is high and the decoded text is not confidently likely."""
    return no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob <= LOG_PROB_THRESHOLD


_WORD_RE = re.compile(r"[\w']+")


def normalize_words(text: str) -> list[str]:
    """Lower-case word tokens without punctuation, for agreement and WER."""
    return _WORD_RE.findall(text.lower())

__all__ = ["DEFAULT_WINDOW_S", "AsrEngine", "AsrOptions", "Transcript", "Word", "normalize_words"]
