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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from models.encoders.whisper import (
    DEFAULT_WINDOW_S,
    WINDOW_FRAMES,
    WhisperEncoder,
    WhisperEncoding,
    _padded,
    n_output_frames,
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
        return _transcript(segments, encoding.frames, language, language_prob)

    def transcribe_batch(self, audios: Sequence[np.ndarray],
                         final: bool = True) -> list[Transcript]:
        """Transcribe several utterances, each as ``transcribe`` would, sharing the model's
        calls: those that fit in ``window_s`` are encoded as one batch and decoded by one
        greedy ``generate`` (their word times by one ``align``). On CPU the decoder's steps
        are small matrix products, so a batch of 4 costs about half as much decoding per
        utterance; the encoder costs the same per utterance (bench/experiments/asr_batch.py).
        The others (longer, a detected language) are transcribed one by one."""
        if self.detect or not self.config.first_window_only or len(audios) < 2:
            return [self.transcribe(audio, final=final) for audio in audios]
        out: list[Transcript | None] = [None] * len(audios)
        together: list[int] = []
        features: dict[int, np.ndarray] = {}
        for i, audio in enumerate(audios):
            feats = self.model.feature_extractor(audio)
            if _padded(feats, self.config.window_s).shape[-1] == WINDOW_FRAMES:
                out[i] = self.transcribe(audio, final=final)  # longer than window_s
            else:
                together.append(i)
                features[i] = feats
        if together:
            word_ts = final and self.config.word_timestamps
            batch = [features[i] for i in together]
            lengths = [len(audios[i]) for i in together]
            try:
                results = self._first_windows(batch, lengths, word_ts)
            except IndexError as exc:  # as in transcribe: the word alignment failed
                if not word_ts:
                    raise
                LOG.warning("word alignment failed in a batch of %d (%s); transcribing "
                            "each of them alone", len(together), exc)
                results = [self.transcribe(audios[i], final=final) for i in together]
            for i, result in zip(together, results, strict=True):
                out[i] = result
        return [t for t in out if t is not None]

    def _first_windows(self, batch: list[np.ndarray], lengths: list[int],
                       word_ts: bool) -> list[Transcript]:
        """faster-whisper's ``generate_segments`` on the first (only) window of each of
        ``batch`` (log-mel features of utterances that fit in ``window_s``), at temperature
        0 and without an initial prompt, as ``transcribe`` configures it: the same calls,
        batched."""
        from faster_whisper import WhisperModel
        from faster_whisper.transcribe import Segment, get_compression_ratio
        from faster_whisper.transcribe import Word as FwWord

        model, tokenizer = self.model, self.tokenizer
        options = self._options(word_ts)
        padded = np.concatenate([_padded(f, self.config.window_s) for f in batch])
        storage = model.encode(padded)
        states = np.asarray(storage, dtype=np.float32)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=options.without_timestamps)
        results = model.model.generate(
            storage, [list(prompt) for _ in batch], beam_size=options.beam_size,
            patience=options.patience, length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            max_length=len(prompt) + options.max_new_tokens, return_scores=True,
            return_no_speech_prob=True, suppress_blank=options.suppress_blank,
            suppress_tokens=options.suppress_tokens,
            max_initial_timestamp_index=int(round(options.max_initial_timestamp
                                                  / model.time_precision)))
        decoded = []  # per utterance: its segments (dicts) and their shared figures
        for feats, result in zip(batch, results, strict=True):
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * len(tokens) ** options.length_penalty \
                / (len(tokens) + 1)
            size = feats.shape[-1] - 1  # content frames (the extractor adds one)
            segments, _, _ = model._split_segments_by_timestamps(
                tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=size,
                segment_duration=size * model.feature_extractor.time_per_frame, seek=0)
            ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
            decoded.append((segments, size, avg_logprob, ratio, result.no_speech_prob))
        if word_ts:
            alignments = WhisperModel.find_alignment(
                model, tokenizer,
                [[t for s in segs for t in s["tokens"] if t < tokenizer.eot]
                 for segs, *_ in decoded],
                storage, [size for _, size, *_ in decoded])
            for (segs, size, *_), alignment in zip(decoded, alignments, strict=True):
                # one utterance at a time, as transcribe does (the last speech time starts
                # at 0 for each), from the alignment computed in the batch
                WhisperModel.add_word_timestamps(
                    cast(Any, _Aligned(model, alignment)), [segs], tokenizer, storage, size,
                    options.prepend_punctuations, options.append_punctuations,
                    last_speech_timestamp=0.0)
        out = []
        for row, (segs, _, avg_logprob, ratio, no_speech) in enumerate(decoded):
            kept = [Segment(id=n, seek=0, start=s["start"], end=s["end"],
                            text=tokenizer.decode(s["tokens"]), tokens=s["tokens"],
                            temperature=0.0, avg_logprob=avg_logprob,
                            compression_ratio=ratio, no_speech_prob=no_speech,
                            words=[FwWord(**w) for w in s["words"]] if word_ts else None)
                    for n, s in enumerate(segs, 1)
                    if s["start"] != s["end"] and tokenizer.decode(s["tokens"]).strip()]
            frames = states[row, : n_output_frames(lengths[row])].copy()
            out.append(_transcript(kept, frames, self.language, None))
        return out


def _transcript(segments: list[Any], frames: np.ndarray, language: str | None,
                language_prob: float | None) -> Transcript:
    """A ``Transcript`` from faster-whisper's segments of one utterance."""
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
        encoder_frames=frames,
        no_speech_prob=no_speech if n_tokens else None,
        avg_logprob=logprob_sum / n_tokens if n_tokens else None,
        compression_ratio=compression if n_tokens else None,
    )


class _Aligned:
    """The WhisperModel as ``add_word_timestamps`` sees it in ``_first_windows``: its own
    attributes, except ``find_alignment``, which gives the one utterance's alignment the
    batch already computed."""

    def __init__(self, model: Any, alignment: list[dict[str, Any]]) -> None:
        self._model = model
        self._alignment = alignment

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def find_alignment(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        return [self._alignment]


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
