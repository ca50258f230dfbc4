"""The one feature builder: what serving computes and what the trainer caches.

``EmotionModel.feature_items`` (serving) and ``offline_training.features``
(the trainer's cache) both build text features with ``text_features`` and
word spans with ``word_frames``, and both read audio references with
``parse_audio_ref`` / ``load_frame_encoder``; serving (``EmotionModel``) and
training (``offline_training.dataset.build_items``) both assemble a head's
input with ``head_item``. A change to tokenisation, word alignment, layers,
pooling or what a head is given is made here once, so training and serving
cannot silently disagree (tests/offline_training/test_parity.py checks it on
real clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from models.asr import Word
from models.audio import FRAMES_PER_SECOND
from models.encoders.text import TextEncoder
from models.errors import ModelError
from models.heads import FusionHead, HeadItem
from models.heads.mmer import ctc_target

AUDIO_KINDS = ("whisper", "hf", "prosody")


class HasWords(Protocol):
    """A transcript: ``models.asr.Transcript`` or ``models.inference.EmotionInput``."""

    @property
    def text(self) -> str: ...

    @property
    def words(self) -> tuple[Word, ...]: ...


@dataclass(frozen=True)
class AudioRef:
    """A parsed audio encoder reference: ``whisper:<ref>``, ``hf:<ref>`` or ``prosody``."""

    kind: str  # one of AUDIO_KINDS
    ref: str  # the Whisper or Hugging Face reference ("" for prosody)


def parse_audio_ref(ref: str, where: str = "audio encoder reference") -> AudioRef:
    """Raise ``ModelError`` naming ``where`` the reference came from if it is not understood."""
    if ref == "prosody":
        return AudioRef("prosody", "")
    kind, sep, rest = ref.partition(":")
    if not sep or kind not in ("whisper", "hf") or not rest:
        raise ModelError(
            f"{where} '{ref}' is not understood; expected 'whisper:<ref>' "
            "(e.g. whisper:packaged:tiny.en), 'hf:<model id or directory>' or 'prosody'"
        )
    return AudioRef(kind, rest)


def load_frame_encoder(audio: AudioRef, device: str = "cpu") -> Any:
    """The frame encoder of an ``hf`` or ``prosody`` reference (``encode_items``).

    Whisper frames come from the ASR's own encoder pass (models.encoders.whisper).
    """
    if audio.kind == "hf":
        from models.encoders.hf_audio import HFAudioEncoder

        return HFAudioEncoder.load(audio.ref, device=device)
    if audio.kind == "prosody":
        from models.encoders.prosody import ProsodyEncoder

        return ProsodyEncoder()
    raise ModelError(f"'{audio.kind}' audio has no frame encoder here; Whisper frames come "
                     "from models.encoders.whisper.WhisperEncoder")


def word_frames(transcript: HasWords, n_frames: int) -> tuple[list[str], Tensor]:
    """Words and their [start, end) frame spans (W, 2).

    Without word times the transcript's words are spread evenly over the audio.
    """
    if transcript.words:
        words = [w.word.strip() for w in transcript.words]
        times = torch.tensor([[w.start, w.end] for w in transcript.words], dtype=torch.float32)
    else:
        words = transcript.text.split()
        edges = torch.linspace(0.0, n_frames / FRAMES_PER_SECOND, len(words) + 1)
        times = torch.stack([edges[:-1], edges[1:]], dim=1)  # (W, 2)
    if not words:
        return [], torch.zeros(0, 2, dtype=torch.long)
    start = torch.round(times[:, 0] * FRAMES_PER_SECOND).long().clamp(0, n_frames - 1)
    end = torch.round(times[:, 1] * FRAMES_PER_SECOND).long().clamp(max=n_frames)
    end = torch.maximum(end, start + 1)
    return words, torch.stack([start, end], dim=1)


@dataclass(frozen=True)
class TextFeatures:
    """One utterance's text encoder output, unpadded (float32)."""

    text: Tensor  # (Tt, Dt) token states
    text_layers: Tensor | None  # (Lt, Tt, Dt) all hidden layers, if asked for
    word_text: Tensor | None  # (W, Dt) word vectors, if words were asked for
    word_spans: Tensor | None  # (W, 2) long [start, end) audio frames of each word


def text_features(encoder: TextEncoder, transcripts: Sequence[HasWords],
                  n_frames: Sequence[int], words: bool, layers: bool) -> list[TextFeatures]:
    """Text features of a batch; ``n_frames`` is each utterance's audio frame count."""
    if not transcripts:
        return []
    spans: list[Tensor] = []
    if words:
        word_lists = []
        for transcript, frames in zip(transcripts, n_frames, strict=True):
            word_list, span = word_frames(transcript, frames)
            word_lists.append(word_list)
            spans.append(span)
        encoding = encoder.encode_words(word_lists, layers=layers)
    else:
        encoding = encoder.encode([t.text for t in transcripts], layers=layers)
    out = []
    for i, frames in enumerate(n_frames):
        n_tokens = int(encoding.mask[i].sum())
        states = encoding.states[i, :n_tokens]
        word_text = word_spans = None
        if words and encoding.word_states is not None and encoding.word_mask is not None:
            n_words = int(encoding.word_mask[i].sum())
            if n_words == 0:  # empty transcript: one pseudo-word, the first token, whole clip
                word_text, word_spans = states[:1], torch.tensor([[0, int(frames)]])
            else:
                word_text, word_spans = encoding.word_states[i, :n_words], spans[i][:n_words]
        out.append(TextFeatures(
            text=states,
            text_layers=None if encoding.layers is None else encoding.layers[i, :, :n_tokens],
            word_text=word_text, word_spans=word_spans))
    return out


def head_item(head: type[FusionHead] | FusionHead, audio: Tensor, text: TextFeatures,
              transcript: str, *, audio_layers: Tensor | None = None,
              context: tuple[Tensor, Tensor] | None = None, functionals: Tensor | None = None,
              label: int | None = None) -> HeadItem:
    """One utterance's input to ``head``, in training and serving alike: exactly the
    features the head declares it needs (``needs_*``), and nothing else, so a head never
    sees in serving what it was not trained with. ``context`` is (pooled audio, pooled text)
    of the past utterances; the CTC target is built from ``transcript``."""
    missing = [name for name, needed, value in (
        ("word features (word_text, word_spans)", head.needs_words, text.word_text),
        ("context", head.needs_context, context),
        ("prosody functionals", head.needs_functionals, functionals)) if needed and value is None]
    if missing:
        name = head.__name__ if isinstance(head, type) else type(head).__name__
        raise ModelError(f"head {name} needs "
                         f"{', '.join(missing)}, which were not computed for it")
    return HeadItem(
        audio=audio, text=text.text, label=label,
        audio_layers=audio_layers if head.needs_audio_layers else None,
        text_layers=text.text_layers if head.needs_text_layers else None,
        word_text=text.word_text if head.needs_words else None,
        word_spans=text.word_spans if head.needs_words else None,
        context_audio=context[0] if context is not None and head.needs_context else None,
        context_text=context[1] if context is not None and head.needs_context else None,
        functionals=functionals if head.needs_functionals else None,
        ctc_target=ctc_target(transcript) if head.needs_ctc else None)
