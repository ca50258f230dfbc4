"""The one inference entry point the streamer calls: ``EmotionModel``.

``EmotionModel.load(bundle)`` reads a bundle (see models/bundle.py), loads
its encoders and head; ``predict(batch)`` turns utterances (audio, ASR text,
word times, optional Whisper frames from the ASR pass, past context) into
class probabilities; ``features(batch)`` stops after the encoders (the trainer
caches these, built by the same ``models.features`` code).

Frame rate: every audio encoder here gives 50 frames per second (20 ms), so
word times in seconds map to frame indices as ``round(t * 50)``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.asr import DEFAULT_WINDOW_S, Word
from models.bundle import Bundle, load_bundle
from models.encoders import AudioFeatures
from models.encoders.text import TextEncoder
from models.encoders.whisper import window_seconds
from models.errors import ModelError
from models.feature_stats import AdaptationSettings, DeploymentStats
from models.features import (
    AudioRef,
    TextFeatures,
    head_item,
    load_frame_encoder,
    parse_audio_ref,
    text_features,
)
from models.heads import FusionHead, HeadBatch, HeadItem, collate


@dataclass(frozen=True)
class ContextItem:
    """One past utterance of the same stream/channel."""

    text: str
    audio_embedding: np.ndarray  # (Da,) mean of the utterance's audio frames
    text_embedding: np.ndarray  # (Dt,) mean of the utterance's text token states


@dataclass(frozen=True)
class EmotionInput:
    audio: np.ndarray  # (N,) float32 16 kHz mono utterance
    text: str  # ASR transcript (may be "")
    words: tuple[Word, ...] = ()
    whisper_frames: np.ndarray | None = None  # (T, D) Whisper encoder output for the utterance
    context: tuple[ContextItem, ...] = ()  # oldest first
    language: str | None = None  # the transcript's language (None: assumed one the model knows)
    band: str = "wideband"  # input kind (models.feature_stats.BANDS): whose statistics apply
    # This utterance's audio features from ``EmotionModel.encode_audio`` (computed ahead,
    # e.g. while the end-of-speech hangover runs); None: computed with the batch.
    audio_features: AudioFeatures | None = None


@dataclass(frozen=True)
class EmotionPrediction:
    labels: tuple[str, ...]
    probabilities: np.ndarray  # (C,) float, sums to 1
    valence: float | None
    arousal: float | None
    dominance: float | None
    context_item: ContextItem  # append to the stream's context for later utterances
    # What the label was computed from: ("audio",) when the head ignores text or the
    # transcript was empty or in a language the text branch does not know.
    modalities: tuple[str, ...] = ("audio", "text")

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]


def context_item_for(item: HeadItem, text: str) -> ContextItem:
    """The context entry later utterances see: mean-pooled encoder features of this one."""
    return ContextItem(
        text=text,
        audio_embedding=item.audio.float().mean(dim=0).numpy(),
        text_embedding=item.text.float().mean(dim=0).numpy(),
    )


class EmotionModel:
    """Encoders + a fusion head from one bundle."""

    def __init__(self, bundle: Bundle, head: FusionHead, text_encoder: TextEncoder,
                 device: str = "cpu", whisper_model: Any | None = None,
                 audio_encoder: Any | None = None,
                 adaptation: AdaptationSettings | None = None, audio_int8: bool = False) -> None:
        config = bundle.config
        self.bundle = bundle
        self.model_id: str = config.model_id
        self.labels: tuple[str, ...] = config.labels
        self.device: str = device
        self.head = head.to(device).eval()
        self.text_encoder = text_encoder
        audio_ref = _audio_ref(config.audio.ref, bundle.path)
        self.audio_kind, self.audio_ref = audio_ref.kind, audio_ref.ref
        self.uses_whisper_frames: bool = self.audio_kind == "whisper"
        self._whisper_model = whisper_model
        self._audio_encoder = audio_encoder  # built lazily for whisper (may not be needed)
        self._prosody: Any | None = None  # for heads that take prosody functionals
        # The all-layer Whisper pass runs on int8 linear layers (``load``'s audio_int8).
        self.audio_int8 = False
        if self.audio_kind == "whisper" and config.audio.layers == "all":
            # All hidden states come from the PyTorch copy of the encoder (CTranslate2 gives
            # only the last), as the trainer cached them; the ASR's frames are not enough.
            self.uses_whisper_frames = False
            if audio_encoder is None:
                from models.encoders.whisper_torch import WhisperTorchEncoder

                # int8 linear layers where they run (the CPU); a GPU keeps float32
                self.audio_int8 = audio_int8 and device == "cpu"
                self._audio_encoder = WhisperTorchEncoder.load(self.audio_ref, device=device,
                                                               int8=self.audio_int8)
        if text_encoder.dim != config.text.dim:
            raise ModelError(
                f"text encoder '{text_encoder.ref}' gives {text_encoder.dim}-d states but "
                f"{bundle.path}/bundle.json (encoders.text.dim) expects {config.text.dim}; use "
                "the text encoder the bundle was trained with"
            )
        self._check_layer_counts()
        # Deployment feature statistics (models/feature_stats.py) for heads trained on
        # per-corpus standardised audio; they start from the training population.
        self.adaptation: DeploymentStats | None = None
        self._adaptation_lock = threading.Lock()  # the fusion worker updates, a saver reads
        if getattr(head, "domain_standardise", False):
            probe: Any = head
            self.adaptation = DeploymentStats(probe.domain_mean.cpu().double().numpy(),
                                              probe.domain_var.cpu().double().numpy(),
                                              adaptation)

    def _check_layer_counts(self) -> None:
        """Heads that weight encoder layers must get as many layers as they were built for."""
        config = self.bundle.config
        head_config = self.head.config
        text_layers = self.text_encoder.num_layers if config.text.layers == "all" else 1
        audio_layers = 1
        if config.audio.layers == "all" and self._audio_encoder is not None:
            audio_layers = int(self._audio_encoder.num_layers)
        checks = [("text_layers", text_layers, "text"), ("audio_layers", audio_layers, "audio")]
        for field_name, available, modality in checks:
            wanted = getattr(head_config, field_name, None)
            if wanted is not None and wanted != available:
                raise ModelError(
                    f"{self.bundle.path}/bundle.json: head config {field_name}={wanted} but the "
                    f"{modality} encoder gives {available} layer(s) with encoders.{modality}."
                    f"layers='{getattr(config, modality).layers}'; the bundle and its encoders "
                    "disagree (was it trained with another encoder?)"
                )
        used = getattr(head_config, "text_layers_used", None)
        if used is not None and used > text_layers:
            raise ModelError(
                f"{self.bundle.path}/bundle.json: head config text_layers_used={used} but the "
                f"text encoder gives {text_layers} layer(s); set encoders.text.layers to 'all'"
            )

    @classmethod
    def load(cls, bundle: str | Path, device: str = "cpu", whisper_model: Any | None = None,
             text_encoder: str | None = None,
             adaptation: AdaptationSettings | None = None,
             audio_int8: bool = False) -> EmotionModel:
        """``audio_int8``: the all-layer Whisper pass on int8 linear layers
        (``WhisperTorchEncoder.load``), where there is one and it runs on the CPU; bundles
        without it, and a GPU, are served as they are."""
        loaded = load_bundle(bundle)
        config = loaded.config
        head = loaded.build_head()
        text = TextEncoder.load(text_encoder or config.text.ref, device=device,
                                max_tokens=config.text.max_tokens)
        audio_ref = _audio_ref(config.audio.ref, loaded.path)
        audio_encoder: Any | None = None
        if audio_ref.kind != "whisper":
            audio_encoder = load_frame_encoder(audio_ref, device=device)
        return cls(loaded, head, text, device=device, whisper_model=whisper_model,
                   audio_encoder=audio_encoder, adaptation=adaptation, audio_int8=audio_int8)

    # ------------------------------------------------------------ features

    def features(self, batch: Sequence[EmotionInput]) -> HeadBatch:
        """Encoder features of ``batch``, padded (labels unset)."""
        return collate(self.feature_items(batch))

    def feature_items(self, batch: Sequence[EmotionInput]) -> list[HeadItem]:
        """Encoder features of each utterance, unpadded (what a feature cache stores)."""
        if not batch:
            return []
        config = self.bundle.config
        audio = self._audio_features(batch)
        text = text_features(self.text_encoder, batch, [int(f.frames.shape[0]) for f in audio],
                             words=self.head.needs_words, layers=config.text.layers == "all")
        return [self._item(inp, feats, t) for inp, feats, t in zip(batch, audio, text, strict=True)]

    def _item(self, inp: EmotionInput, feats: AudioFeatures, text: TextFeatures) -> HeadItem:
        config = self.bundle.config
        context = None
        if self.head.needs_context:
            past = inp.context[-config.context_size:] if config.context_size > 0 else ()
            context = (_stack([c.audio_embedding for c in past], config.audio.dim),
                       _stack([c.text_embedding for c in past], config.text.dim))
        functionals = None
        if self.head.needs_functionals:
            from models.encoders.prosody import ProsodyEncoder
            from models.encoders.prosody import functionals as prosody_functionals

            if self._prosody is None:
                self._prosody = ProsodyEncoder()
            functionals = prosody_functionals(_as_audio(inp.audio), self._prosody)
        return head_item(self.head, feats.frames, text, inp.text, audio_layers=feats.layers,
                         context=context, functionals=functionals)

    @property
    def encodes_audio(self) -> bool:
        """The model runs its own audio encoder pass (not the ASR pass's frames), so that
        pass can be computed ahead with ``encode_audio``."""
        return not self.uses_whisper_frames

    def encode_audio(self, audios: Sequence[np.ndarray]) -> list[AudioFeatures]:
        """The audio features ``predict`` would compute for these utterances (give them back
        as ``EmotionInput.audio_features``). Thread-safe: no state is touched."""
        return self._audio_features([EmotionInput(audio=a, text="") for a in audios])

    def _audio_features(self, batch: Sequence[EmotionInput]) -> list[AudioFeatures]:
        given = [inp.audio_features for inp in batch]
        if all(f is not None for f in given):
            return [f for f in given if f is not None]
        todo = [i for i, f in enumerate(given) if f is None]
        computed = dict(zip(todo, self._encode_audio([batch[i] for i in todo]), strict=True))
        return [computed[i] if f is None else f for i, f in enumerate(given)]

    def _encode_audio(self, batch: Sequence[EmotionInput]) -> list[AudioFeatures]:
        want_layers = self.bundle.config.audio.layers == "all"
        expected = self.bundle.config.audio.dim
        if self.audio_kind == "whisper" and want_layers:
            encodings = self._audio_encoder.encode_batch(  # type: ignore[union-attr]
                [_as_audio(inp.audio) for inp in batch],
                window_seconds(self.bundle.config.audio.window))
            out = [AudioFeatures(frames=torch.from_numpy(e.last.copy()),
                                 layers=torch.from_numpy(e.hidden_states)) for e in encodings]
        elif self.audio_kind == "whisper":
            frames = self._whisper_frames(batch)
            out = [AudioFeatures(frames=torch.from_numpy(np.asarray(f, dtype=np.float32)),
                                 layers=None) for f in frames]
        else:
            audios = [_as_audio(inp.audio) for inp in batch]
            out = self._audio_encoder.encode_items(audios, layers=want_layers)  # type: ignore
        for feats in out:
            if feats.frames.ndim != 2 or feats.frames.shape[1] != expected:
                raise ModelError(
                    f"audio features have shape {tuple(feats.frames.shape)} but "
                    f"{self.bundle.path}/bundle.json (encoders.audio) expects (T, {expected}) "
                    f"from '{self.bundle.config.audio.ref}'; pass frames from that encoder"
                )
        return out

    def _whisper_frames(self, batch: Sequence[EmotionInput]) -> list[np.ndarray]:
        missing = [i for i, inp in enumerate(batch) if inp.whisper_frames is None]
        computed: dict[int, np.ndarray] = {}
        if missing:
            encoder = self._whisper_encoder()
            # As the ASR encodes (and the trainer caches): one utterance, the ASR's window.
            computed = {i: encoder.encode(_as_audio(batch[i].audio), DEFAULT_WINDOW_S).frames
                        for i in missing}
        return [computed[i] if inp.whisper_frames is None else inp.whisper_frames
                for i, inp in enumerate(batch)]

    def _whisper_encoder(self) -> Any:
        from models.encoders.whisper import WhisperEncoder, load_whisper

        if self._audio_encoder is None:
            if self._whisper_model is None:
                self._whisper_model = load_whisper(
                    self.audio_ref, device="cuda" if self.device.startswith("cuda") else "cpu")
            self._audio_encoder = WhisperEncoder(self._whisper_model)
        return self._audio_encoder

    # ------------------------------------------------------------ prediction

    def predict(self, batch: Sequence[EmotionInput], observe: bool = True
                ) -> list[EmotionPrediction]:
        """Class probabilities (and VAD if the head has them) for each utterance.
        ``observe``: the deployment statistics take these utterances in (False for
        warm-ups and other audio that is not the deployment's)."""
        if not batch:
            return []
        batch = [self.usable_text(inp) for inp in batch]
        items = self.feature_items(batch)
        head_batch = collate(items).to(self.device)
        with torch.inference_mode(), _autocast(self.device):
            if self.adaptation is None:
                output = self.head(head_batch)
            else:
                output = self._adapted(head_batch, [inp.band for inp in batch], observe)
        # Calibrated: the bundle's temperature was fitted on held-out speakers.
        temperature = self.bundle.config.calibration.temperature
        probs = torch.softmax(output.logits.float() / temperature, dim=-1).cpu().numpy()
        vad = None if output.regression is None else output.regression.float().cpu().numpy()
        predictions = []
        for i, (inp, item) in enumerate(zip(batch, items, strict=True)):
            predictions.append(EmotionPrediction(
                labels=self.labels,
                probabilities=probs[i],
                valence=None if vad is None else float(vad[i, 0]),
                arousal=None if vad is None else float(vad[i, 1]),
                dominance=None if vad is None else float(vad[i, 2]),
                context_item=context_item_for(item, inp.text),
                modalities=self.modalities_for(inp),
            ))
        return predictions

    def _adapted(self, batch: HeadBatch, bands: list[str], observe: bool) -> Any:
        """The head on audio features standardised by the deployment's statistics, which
        then take in this batch (after it is labelled: each label is causal)."""
        assert self.adaptation is not None
        probe: Any = self.head  # a linear probe (the only head with domain_standardise)
        audio, text = probe.pooled(batch)
        raw = audio.float().cpu().numpy()
        with self._adaptation_lock:
            standardised = self.adaptation.standardise(raw, bands)
            if observe:
                self.adaptation.observe(raw, bands)
        audio = torch.from_numpy(standardised).float().to(audio.device)
        return probe.classify(audio, text)

    def adaptation_state(self) -> bytes | None:
        """The deployment statistics, serialised (None when the bundle does not adapt)."""
        if self.adaptation is None:
            return None
        with self._adaptation_lock:
            return self.adaptation.to_bytes(self.model_id)

    def load_adaptation_state(self, data: bytes, where: str) -> None:
        """Continue from saved deployment statistics (``adaptation_state``)."""
        if self.adaptation is None:
            raise ModelError(f"{where}: bundle '{self.model_id}' keeps no feature statistics")
        with self._adaptation_lock:
            self.adaptation.load_bytes(data, self.model_id, where)

    def usable_text(self, inp: EmotionInput) -> EmotionInput:
        """``inp``, with its transcript dropped when it cannot be trusted (the head then sees
        what it saw for empty transcripts): its language is not one the text branch was
        trained on, or the ASR was unsure of its words (``text_trusted``)."""
        spec = self.bundle.config.text
        known_language = inp.language is None or inp.language in spec.languages
        if known_language and text_trusted(inp.words, spec.min_word_probability,
                                           spec.min_words):
            return inp
        return replace(inp, text="", words=())

    def modalities_for(self, inp: EmotionInput) -> tuple[str, ...]:
        used = self.head.modalities
        if not inp.text.strip():  # () for a text-only head given no words: a prior, no evidence
            used = tuple(m for m in used if m != "text")
        return used


def text_trusted(words: Sequence[Word], min_word_probability: float, min_words: int) -> bool:
    """Whether a transcript's words are plausible enough for the text branch: at least
    ``min_words`` words and a mean ASR word probability of at least ``min_word_probability``.
    Transcripts without word probabilities (gold text: 1.0 each) pass the probability test."""
    if len(words) < min_words:
        return False
    if not words or min_word_probability <= 0:
        return True
    return float(np.mean([w.probability for w in words])) >= min_word_probability


def _autocast(device: str) -> torch.autocast:
    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return torch.autocast(device_type="cpu", enabled=False)


def _audio_ref(ref: str, bundle_path: Path) -> AudioRef:
    return parse_audio_ref(ref, where=f"{bundle_path}/bundle.json: encoders.audio.ref")


def _as_audio(audio: np.ndarray) -> np.ndarray:
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 1:
        raise ModelError(f"EmotionInput.audio must be 1-D mono 16 kHz samples, got shape "
                         f"{array.shape}; mix channels down or split them into streams first")
    return array


def _stack(vectors: Sequence[np.ndarray], dim: int) -> Tensor:
    if not vectors:
        return torch.zeros(0, dim)
    return torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in vectors]))
