"""Feature cache for frozen encoders, on disk: one entry per utterance, keyed by the
utterance's audio content and the encoder settings (layout: ``FeatureCache``).

Entries are written atomically, so an interrupted extraction resumes where it stopped, and
a subset or a re-ordered corpus reuses them. With ``transcripts="asr"`` and a Whisper audio
encoder, one Whisper pass per utterance gives both the frames and the transcript (as in the
streamer). What is cached is built by ``models.features``, as served.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.asr import DEFAULT_WINDOW_S, Transcript, Word
from models.encoders.whisper import AUDIO_WINDOWS
from models.errors import ModelError
from models.features import AudioRef, load_frame_encoder, parse_audio_ref, text_features
from offline_training.audio import load_audio
from offline_training.errors import FeatureCacheError
from offline_training.records import Utterance
from offline_training.transcripts import (
    SOURCES,
    WhisperAsr,
    read_transcripts,
    write_transcripts,
)

BATCH_SIZE = 32  # utterances per encoder call
# 3: one entry per utterance, keyed by audio content; 2: Whisper frames in the ASR window
CACHE_VERSION = 3


@dataclass(frozen=True)
class FeatureSpec:
    """Which frozen encoders and transcripts to use (these settings key the cache)."""

    audio: str = "whisper:packaged:tiny.en"  # same reference syntax as bundle encoders.audio.ref
    text: str = "packaged:all-MiniLM-L6-v2"
    transcripts: str = "gold"  # "gold" (corpus text) or "asr" (faster-whisper, as served)
    words: bool = False  # also word vectors + word frame spans (word-level heads)
    text_layers: bool = False  # also all hidden text layers (layer-weighting heads)
    audio_layers: bool = False  # also all hidden audio layers (Whisper: its PyTorch copy)
    functionals: bool = False  # also utterance prosody functionals (models.encoders.prosody)
    max_tokens: int = 128
    compute_type: str = "int8"  # Whisper (CTranslate2) compute type
    asr: str = "packaged:tiny.en"  # faster-whisper model for transcripts="asr"
    # Whisper encoder window for utterances that fit in it: the streamer's asr.window_s, so
    # that cached frames are the frames served.
    window_s: float = DEFAULT_WINDOW_S
    # The all-layer audio pass's window (bundle encoders.audio.window): "full" = window_s,
    # as the ASR encodes; "fit" = each utterance's own length in whole seconds.
    audio_window: str = "full"

    def __post_init__(self) -> None:
        if self.transcripts not in SOURCES:
            raise ValueError(f"transcripts must be one of {SOURCES}, got '{self.transcripts}'")
        if self.audio_window not in AUDIO_WINDOWS:
            raise ValueError(f"audio_window must be one of {AUDIO_WINDOWS}, "
                             f"got '{self.audio_window}'")
        if self.audio_window == "fit" and not (self.audio_layers
                                               and self.audio.startswith("whisper:")):
            raise ValueError("audio_window 'fit' is for the all-layer Whisper pass "
                             "(whisper:<ref> with audio layers 'all')")

    @property
    def audio_window_s(self) -> float | None:
        """The audio pass's ``window_s`` (None = fit each utterance)."""
        return self.window_s if self.audio_window == "full" else None

    @property
    def asr_ref(self) -> str:
        """The ASR model as an audio reference (its frames are cached with the transcripts)."""
        return f"whisper:{self.asr}"


@dataclass(frozen=True)
class UtteranceFeatures:
    """Cached encoder output of one utterance (float32 tensors, no padding)."""

    audio: Tensor  # (Ta, Da)
    text: Tensor  # (Tt, Dt)
    transcript: str
    word_text: Tensor | None = None  # (W, Dt)
    word_spans: Tensor | None = None  # (W, 2) long, [start, end) audio frames
    text_layers: Tensor | None = None  # (Lt, Tt, Dt)
    audio_layers: Tensor | None = None  # (La, Ta, Da)
    functionals: Tensor | None = None  # (Dp,) prosody statistics of the utterance
    words: tuple[Word, ...] = ()  # the transcript's words (ASR: with word probabilities)


@dataclass(frozen=True)
class FeatureSet:
    spec: FeatureSpec
    items: dict[str, UtteranceFeatures]

    @property
    def audio_dim(self) -> int:
        return int(next(iter(self.items.values())).audio.shape[1])

    @property
    def text_dim(self) -> int:
        return int(next(iter(self.items.values())).text.shape[1])


def as_float(tensor: Tensor | None) -> Tensor | None:
    """Cached float16 -> float32 (what the heads train in)."""
    return None if tensor is None else tensor.float()


def digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class UtteranceKeys:
    """Each utterance's cache key: its audio file's content and its segment.

    Not its id or its place in a corpus: a subset, a re-ordered or re-labelled corpus,
    or the same file under another name reuses what is cached; a replaced file does not.
    """

    def __init__(self) -> None:
        self._files: dict[str, str] = {}

    def file_hash(self, path: str) -> str:
        if path not in self._files:
            sha = hashlib.sha1()
            try:
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        sha.update(block)
            except OSError as exc:
                raise FeatureCacheError(f"audio file '{path}' cannot be read: {exc}") from exc
            self._files[path] = sha.hexdigest()
        return self._files[path]

    def key(self, utt: Utterance) -> str:
        return digest([self.file_hash(utt.path), utt.start, utt.end])


def batches(items: Sequence[Utterance]) -> list[list[Utterance]]:
    return [list(items[i:i + BATCH_SIZE]) for i in range(0, len(items), BATCH_SIZE)]


def frames_settings(audio_ref: str, compute_type: str, window_s: float | None,
                    layers: bool = False) -> dict[str, Any]:
    """What a frames cache directory holds (its key, and its meta.json): window_s None is
    the "fit" window."""
    return {"audio": audio_ref, "compute_type": compute_type,
            "window_s": "fit" if window_s is None else window_s, "layers": layers}


def prepare_dir(directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / "meta.json"
    if meta_path.is_file():
        existing = json.loads(meta_path.read_text())
        if existing != meta:
            raise FeatureCacheError(f"cache '{directory}' was written with other settings "
                                    f"({existing}); delete it to recompute")
    else:
        meta_path.write_text(json.dumps(meta, indent=2))


def entry(directory: Path, key: str, suffix: str = ".safetensors") -> Path:
    """Where one utterance's entry lives (two-level fan-out keeps directories small)."""
    return directory / key[:2] / f"{key}{suffix}"


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)  # atomic: an interrupted run never leaves half an entry


def load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FeatureCacheError(f"cache entry '{path}' is unreadable ({exc}); delete it to "
                                "recompute") from exc


@dataclass(frozen=True)
class Frames:
    """One utterance's audio encoder output, as cached (float16)."""

    frames: Tensor  # (T, D) last layer
    layers: Tensor | None  # (L, T, D) all hidden states, if asked for


class AudioStage:
    """Audio frames (all layers if asked), or ASR transcripts + Whisper frames."""

    def __init__(self, audio_ref: str, compute_type: str, threads: int,
                 window_s: float | None, layers: bool = False) -> None:
        try:
            self.audio: AudioRef = parse_audio_ref(audio_ref)
        except ModelError as exc:
            raise FeatureCacheError(str(exc)) from exc
        if layers and self.audio.kind == "prosody":
            raise FeatureCacheError("prosody frames have no layers; use --audio-layers last")
        self.compute_type = compute_type
        self.threads = threads
        self.window_s = window_s
        self.layers = layers
        self._whisper: Any = None
        self._other: Any = None

    def whisper_model(self) -> Any:
        from models.encoders.whisper import load_whisper

        if self.audio.kind != "whisper":
            raise FeatureCacheError(f"'{self.audio.kind}:{self.audio.ref}' is not a Whisper "
                                    "reference")
        if self._whisper is None:
            self._whisper = load_whisper(self.audio.ref, compute_type=self.compute_type,
                                         cpu_threads=self.threads)
        return self._whisper

    def frames(self, audios: list[np.ndarray]) -> list[Frames]:
        if self.audio.kind == "whisper" and self.layers:
            # All hidden states: the PyTorch copy of the encoder (CTranslate2 gives the last).
            encodings = self.other_encoder().encode_batch(audios, self.window_s)
            return [Frames(torch.from_numpy(e.last.copy()).half(),
                           torch.from_numpy(e.hidden_states).half())
                    for e in encodings]
        if self.audio.kind == "whisper":
            from models.encoders.whisper import WhisperEncoder

            # In the streamer's window: the frames it serves.
            out = WhisperEncoder(self.whisper_model()).encode_batch(audios, self.window_s)
            return [Frames(torch.from_numpy(np.asarray(f, dtype=np.float32)).half(), None)
                    for f in out]
        features = self.other_encoder().encode_items(audios, layers=self.layers)
        return [Frames(f.frames.half(), None if f.layers is None else f.layers.half())
                for f in features]

    def asr(self, audios: list[np.ndarray]) -> list[tuple[Transcript, Frames]]:
        """One Whisper pass per utterance: transcript + the frames ``frames`` gives."""
        if self.window_s is None:
            raise FeatureCacheError("the ASR pass needs a fixed window (asr.window_s)")
        asr = WhisperAsr(self.whisper_model(), self.window_s)
        results = [asr.run(audio) for audio in audios]
        return [(r.transcript, Frames(torch.from_numpy(r.frames).half(), None))
                for r in results]

    def other_encoder(self) -> Any:
        """Hugging Face audio encoders ('hf:<ref>'), prosody frames ('prosody'), and
        Whisper's PyTorch copy for all layers."""
        if self._other is None:
            try:
                if self.audio.kind == "whisper":
                    from models.encoders.whisper_torch import WhisperTorchEncoder

                    self._other = WhisperTorchEncoder.load(self.audio.ref)
                else:
                    self._other = load_frame_encoder(self.audio)
            except ModelError as exc:
                raise FeatureCacheError(str(exc)) from exc
        return self._other


class FeatureCache:
    """Extracts and reads cached features under ``root``, one entry per utterance.

    Layout (keys: ``UtteranceKeys``; settings keys: a digest of the encoder settings)::

        <root>/frames-<settings>/meta.json, <k[:2]>/<k>.safetensors   audio frames (+ layers)
        <root>/frames-<asr settings>/<k[:2]>/<k>.asr.json              ASR transcripts
        <root>/text-<settings>/<t[:2]>/<t>.safetensors                 text features, keyed
                                                                       by transcript + frames
        <root>/prosody-<version>/<k[:2]>/<k>.safetensors               prosody functionals

    ``computed`` counts the utterances each stage had to compute in this object's life
    (tests check that a subset or a re-ordered corpus computes nothing).
    """

    def __init__(self, root: Path, threads: int = 1, progress: bool = True) -> None:
        self.root = root
        self.threads = threads
        self.progress = progress
        self.keys = UtteranceKeys()
        self.computed: Counter[str] = Counter()

    def frames_dir(self, audio_ref: str, compute_type: str, window_s: float | None,
                   layers: bool = False) -> Path:
        settings = frames_settings(audio_ref, compute_type, window_s, layers)
        return self.root / f"frames-{digest({'v': CACHE_VERSION, **settings})}"

    def audio_dir(self, spec: FeatureSpec) -> Path:
        return self.frames_dir(spec.audio, spec.compute_type, spec.audio_window_s,
                               spec.audio_layers)

    def text_dir(self, spec: FeatureSpec) -> Path:
        key = digest({"v": CACHE_VERSION, "text": spec.text, "max_tokens": spec.max_tokens,
                      "words": spec.words, "layers": spec.text_layers})
        return self.root / f"text-{key}"

    def extract(self, utterances: Sequence[Utterance], spec: FeatureSpec) -> FeatureSet:
        """Compute whatever is missing, then load everything."""
        if not utterances:
            raise FeatureCacheError("no utterances to extract features for")
        torch.set_num_threads(self.threads)
        keys = {u.id: self.keys.key(u) for u in utterances}
        if spec.transcripts == "asr":
            transcripts = self.extract_asr(utterances, keys, spec)
        else:
            transcripts = {u.id: Transcript(u.text) for u in utterances}
        audio = self.extract_frames(utterances, keys, spec)
        text = self.extract_text(utterances, spec, transcripts, audio)
        prosody = self.extract_functionals(utterances, keys) if spec.functionals else {}
        items = {}
        for utt in utterances:
            frames, texts = audio[utt.id], text[utt.id]
            items[utt.id] = UtteranceFeatures(
                audio=frames.frames.float(), text=texts["text"].float(),
                transcript=transcripts[utt.id].text, words=transcripts[utt.id].words,
                word_text=as_float(texts.get("word_text")),
                word_spans=texts.get("word_spans"),
                text_layers=as_float(texts.get("text_layers")),
                audio_layers=as_float(frames.layers),
                functionals=prosody.get(utt.id))
        return FeatureSet(spec=spec, items=items)

    def extract_asr(self, utterances: Sequence[Utterance], keys: dict[str, str],
                    spec: FeatureSpec) -> dict[str, Transcript]:
        """ASR transcripts, cached beside the Whisper frames of the same pass."""
        directory = self.frames_dir(spec.asr_ref, spec.compute_type, spec.window_s)
        prepare_dir(directory, frames_settings(spec.asr_ref, spec.compute_type, spec.window_s))
        stage = AudioStage(spec.asr_ref, spec.compute_type, self.threads, spec.window_s)

        def work(batch: list[Utterance]) -> None:
            for utt, (transcript, frames) in zip(batch, stage.asr([load_audio(u) for u in batch]),
                                                 strict=True):
                save_tensors({"frames": frames.frames}, entry(directory, keys[utt.id]))
                write_transcripts({utt.id: transcript},
                                  entry(directory, keys[utt.id], ".asr.json"))

        todo = self._missing(utterances, keys, directory, ".asr.json")
        self._run("asr", todo, f"ASR + frames ({spec.asr_ref})", work)
        transcripts: dict[str, Transcript] = {}
        for utt in utterances:
            stored = read_transcripts(entry(directory, keys[utt.id], ".asr.json"))
            transcripts[utt.id] = next(iter(stored.values()))
        return transcripts

    def extract_frames(self, utterances: Sequence[Utterance], keys: dict[str, str],
                       spec: FeatureSpec) -> dict[str, Frames]:
        directory = self.audio_dir(spec)
        prepare_dir(directory, frames_settings(spec.audio, spec.compute_type,
                                               spec.audio_window_s, spec.audio_layers))
        stage = AudioStage(spec.audio, spec.compute_type, self.threads, spec.audio_window_s,
                           layers=spec.audio_layers)

        def work(batch: list[Utterance]) -> None:
            for utt, frames in zip(batch, stage.frames([load_audio(u) for u in batch]),
                                   strict=True):
                tensors = {"frames": frames.frames}
                if frames.layers is not None:
                    tensors["layers"] = frames.layers
                save_tensors(tensors, entry(directory, keys[utt.id]))

        self._run("frames", self._missing(utterances, keys, directory),
                  f"audio frames ({spec.audio})", work)
        result = {}
        for utt in utterances:
            stored = load_tensors(entry(directory, keys[utt.id]))
            result[utt.id] = Frames(stored["frames"], stored.get("layers"))
        return result

    def extract_text(self, utterances: Sequence[Utterance], spec: FeatureSpec,
                     transcripts: dict[str, Transcript], audio: dict[str, Frames]
                     ) -> dict[str, dict[str, Tensor]]:
        """Text features, keyed by what they depend on: the transcript (words, times) and
        the number of audio frames (word spans)."""
        directory = self.text_dir(spec)
        prepare_dir(directory, {"text": spec.text, "max_tokens": spec.max_tokens,
                                "words": spec.words, "layers": spec.text_layers})
        text_keys = {u.id: digest([transcripts[u.id].text,
                                   [[w.word, w.start, w.end] for w in transcripts[u.id].words],
                                   int(audio[u.id].frames.shape[0])]) for u in utterances}
        encoder: list[Any] = []  # loaded on first use

        def work(batch: list[Utterance]) -> None:
            if not encoder:
                from models.encoders.text import TextEncoder

                encoder.append(TextEncoder.load(spec.text, max_tokens=spec.max_tokens))
            tensors = encode_text(encoder[0], batch, spec, transcripts,
                                  {u.id: audio[u.id].frames for u in batch})
            for utt, stored in zip(batch, tensors, strict=True):
                save_tensors(stored, entry(directory, text_keys[utt.id]))

        self._run("text", self._missing(utterances, text_keys, directory),
                  f"text ({spec.text})", work)
        return {u.id: load_tensors(entry(directory, text_keys[u.id])) for u in utterances}

    def extract_functionals(self, utterances: Sequence[Utterance], keys: dict[str, str]
                            ) -> dict[str, Tensor]:
        """Prosody functionals (pitch, energy, log-mel statistics) of every utterance."""
        from models.encoders.prosody import ProsodyEncoder, functionals

        directory = self.root / f"prosody-{digest({'v': CACHE_VERSION})}"
        prepare_dir(directory, {"functionals": "models.encoders.prosody"})
        encoder = ProsodyEncoder()

        def work(batch: list[Utterance]) -> None:
            for utt in batch:
                save_tensors({"functionals": functionals(load_audio(utt), encoder).float()},
                             entry(directory, keys[utt.id]))

        self._run("prosody", self._missing(utterances, keys, directory), "prosody functionals",
                  work)
        return {u.id: load_tensors(entry(directory, keys[u.id]))["functionals"]
                for u in utterances}

    @staticmethod
    def _missing(utterances: Sequence[Utterance], keys: dict[str, str], directory: Path,
                 suffix: str = ".safetensors") -> list[Utterance]:
        """Utterances without an entry (one per distinct key: duplicates are computed once)."""
        seen: set[str] = set()
        todo = []
        for utt in utterances:
            key = keys[utt.id]
            if key not in seen and not entry(directory, key, suffix).is_file():
                todo.append(utt)
            seen.add(key)
        return todo

    def _run(self, stage: str, todo: list[Utterance], what: str,
             work: Callable[[list[Utterance]], None]) -> None:
        from tqdm import tqdm

        if not todo:
            return
        with tqdm(total=len(todo), desc=what, unit="utt", disable=not self.progress) as bar:
            for batch in batches(todo):
                work(batch)
                self.computed[stage] += len(batch)
                bar.update(len(batch))


def encode_text(encoder: Any, shard: list[Utterance], spec: FeatureSpec,
                transcripts: dict[str, Transcript], audio: dict[str, Tensor]
                ) -> list[dict[str, Tensor]]:
    """Token states (and optionally word vectors/spans, layers), one tensor dict per
    utterance of ``shard`` as cached, built by ``models.features.text_features``: exactly
    what ``EmotionModel`` computes at serving."""
    features = text_features(encoder, [transcripts[u.id] for u in shard],
                             [int(audio[u.id].shape[0]) for u in shard],
                             words=spec.words, layers=spec.text_layers)
    out = []
    for feats in features:
        tensors = {"text": feats.text.half()}
        if feats.text_layers is not None:
            tensors["text_layers"] = feats.text_layers.half()
        if feats.word_text is not None and feats.word_spans is not None:
            tensors["word_text"] = feats.word_text.half()
            tensors["word_spans"] = feats.word_spans.clone()
        out.append(tensors)
    return out


def spec_summary(spec: FeatureSpec) -> dict[str, Any]:
    return asdict(spec)


__all__ = ["FeatureCache", "FeatureSet", "FeatureSpec", "UtteranceFeatures"]
