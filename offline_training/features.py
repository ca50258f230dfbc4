"""Feature cache for frozen encoders, on disk, keyed by encoder id + settings + corpus.

Layout under the cache root::

    <root>/audio-<key>/meta.json, shard_00000.safetensors, ...   audio frames per utterance
    <root>/audio-<key>/asr_00000.jsonl, ...                        ASR transcripts (asr only)
    <root>/text-<key>/meta.json, shard_00000.safetensors, ...    text states per utterance

Shards are written atomically, so an interrupted extraction resumes where it stopped.
With ``transcripts="asr"`` and a Whisper audio encoder, one Whisper pass per utterance gives
both the frames and the transcript (as in the streamer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.asr import DEFAULT_WINDOW_S, Transcript
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

SHARD_SIZE = 32
CACHE_VERSION = 2  # 2: Whisper frames in the streamer's encoder window (window_s)


@dataclass(frozen=True)
class FeatureSpec:
    """Which frozen encoders and transcripts to use (these settings key the cache)."""

    audio: str = "whisper:packaged:tiny.en"  # same reference syntax as bundle encoders.audio.ref
    text: str = "packaged:all-MiniLM-L6-v2"
    transcripts: str = "gold"  # "gold" (corpus text) or "asr" (faster-whisper, as served)
    words: bool = False  # also word vectors + word frame spans (word-level heads)
    text_layers: bool = False  # also all hidden text layers (layer-weighting heads)
    functionals: bool = False  # also utterance prosody functionals (models.encoders.prosody)
    max_tokens: int = 128
    compute_type: str = "int8"  # Whisper (CTranslate2) compute type
    asr: str = "packaged:tiny.en"  # faster-whisper model for transcripts="asr"
    # Whisper encoder window for utterances that fit in it: the streamer's asr.window_s, so
    # that cached frames are the frames served.
    window_s: float = DEFAULT_WINDOW_S

    def __post_init__(self) -> None:
        if self.transcripts not in SOURCES:
            raise ValueError(f"transcripts must be one of {SOURCES}, got '{self.transcripts}'")

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
    functionals: Tensor | None = None  # (Dp,) prosody statistics of the utterance


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
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def corpus_fingerprint(utterances: Sequence[Utterance]) -> str:
    """Ids, paths, segments, and each file's size and modification time: a regenerated or
    replaced audio file gets new features."""
    rows = []
    for utt in utterances:
        try:
            stat = Path(utt.path).stat()
        except OSError as exc:
            raise FeatureCacheError(f"audio file '{utt.path}' of utterance '{utt.id}' cannot be "
                                    f"read: {exc}") from exc
        rows.append([utt.id, utt.path, utt.start, utt.end, stat.st_size, stat.st_mtime_ns])
    return digest(rows)


def shards(utterances: Sequence[Utterance]) -> list[list[Utterance]]:
    return [list(utterances[i:i + SHARD_SIZE]) for i in range(0, len(utterances), SHARD_SIZE)]


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


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FeatureCacheError(f"cache shard '{path}' is unreadable ({exc}); delete it to "
                                "recompute") from exc


class AudioStage:
    """Audio frames, or ASR transcripts + Whisper frames, of a shard of utterances."""

    def __init__(self, audio_ref: str, compute_type: str, threads: int,
                 window_s: float) -> None:
        try:
            self.audio: AudioRef = parse_audio_ref(audio_ref)
        except ModelError as exc:
            raise FeatureCacheError(str(exc)) from exc
        self.compute_type = compute_type
        self.threads = threads
        self.window_s = window_s
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

    def frames(self, shard: list[Utterance]) -> dict[str, Tensor]:
        audios = [load_audio(u) for u in shard]
        if self.audio.kind == "whisper":
            from models.encoders.whisper import WhisperEncoder

            # In the streamer's window: the frames it serves.
            frames = WhisperEncoder(self.whisper_model()).encode_batch(audios, self.window_s)
        else:
            frames = [f.frames.numpy()
                      for f in self.other_encoder().encode_items(audios, layers=False)]
        return to_half(shard, frames)

    def asr(self, shard: list[Utterance]) -> tuple[dict[str, Tensor], dict[str, Transcript]]:
        """One Whisper pass per utterance: transcript + the same frames ``frames`` gives."""
        asr = WhisperAsr(self.whisper_model(), self.window_s)
        results = [asr.run(load_audio(u)) for u in shard]
        transcripts = {u.id: r.transcript for u, r in zip(shard, results, strict=True)}
        return to_half(shard, [r.frames for r in results]), transcripts

    def other_encoder(self) -> Any:
        """Hugging Face audio encoders ('hf:<ref>') and prosody frames ('prosody')."""
        if self._other is None:
            try:
                self._other = load_frame_encoder(self.audio)
            except ModelError as exc:
                raise FeatureCacheError(str(exc)) from exc
        return self._other


def to_half(shard: list[Utterance], frames: Sequence[np.ndarray]) -> dict[str, Tensor]:
    return {u.id: torch.from_numpy(np.asarray(f, dtype=np.float32)).half()
            for u, f in zip(shard, frames, strict=True)}


class FeatureCache:
    """Extracts and reads cached features under ``root``."""

    def __init__(self, root: Path, threads: int = 1, progress: bool = True) -> None:
        self.root = root
        self.threads = threads
        self.progress = progress

    def frames_dir(self, audio_ref: str, compute_type: str, window_s: float,
                   utterances: Sequence[Utterance]) -> Path:
        key = digest({"v": CACHE_VERSION, "audio": audio_ref,
                      "compute_type": compute_type, "window_s": window_s,
                      "corpus": corpus_fingerprint(utterances)})
        return self.root / f"audio-{key}"

    def audio_dir(self, spec: FeatureSpec, utterances: Sequence[Utterance]) -> Path:
        return self.frames_dir(spec.audio, spec.compute_type, spec.window_s, utterances)

    def text_dir(self, spec: FeatureSpec, utterances: Sequence[Utterance]) -> Path:
        key = digest({"v": CACHE_VERSION, "text": spec.text, "max_tokens": spec.max_tokens,
                      "words": spec.words, "layers": spec.text_layers,
                      "transcripts": spec.transcripts,
                      "asr_from": spec.asr_ref if spec.transcripts == "asr" else "",
                      "corpus": corpus_fingerprint(utterances)})
        return self.root / f"text-{key}"

    def extract(self, utterances: Sequence[Utterance], spec: FeatureSpec) -> FeatureSet:
        """Compute whatever is missing, then load everything."""
        if not utterances:
            raise FeatureCacheError("no utterances to extract features for")
        torch.set_num_threads(self.threads)
        if spec.transcripts == "asr":
            transcripts = self.extract_asr(utterances, spec)
        else:
            transcripts = {u.id: Transcript(u.text) for u in utterances}
        audio = self.extract_frames(utterances, spec)
        text = self.extract_text(utterances, spec, transcripts, audio)
        prosody = self.extract_functionals(utterances) if spec.functionals else {}
        items = {}
        for utt in utterances:
            items[utt.id] = UtteranceFeatures(
                audio=audio[utt.id].float(), text=text[f"{utt.id}/text"].float(),
                transcript=transcripts[utt.id].text,
                word_text=as_float(text.get(f"{utt.id}/word_text")),
                word_spans=text.get(f"{utt.id}/word_spans"),
                text_layers=as_float(text.get(f"{utt.id}/text_layers")),
                functionals=prosody.get(utt.id))
        return FeatureSet(spec=spec, items=items)

    def extract_asr(self, utterances: Sequence[Utterance], spec: FeatureSpec
                    ) -> dict[str, Transcript]:
        """ASR transcripts, cached beside the Whisper frames of the same pass."""
        directory = self.frames_dir(spec.asr_ref, spec.compute_type, spec.window_s, utterances)
        prepare_dir(directory, {"audio": spec.asr_ref, "compute_type": spec.compute_type,
                                "n": len(utterances)})
        stage = AudioStage(spec.asr_ref, spec.compute_type, self.threads, spec.window_s)

        def work(index: int, shard: list[Utterance]) -> None:
            frames, transcripts = stage.asr(shard)
            write_transcripts(transcripts, directory / f"asr_{index:05d}.jsonl")
            save_tensors(frames, directory / f"shard_{index:05d}.safetensors")

        todo = [(i, s) for i, s in enumerate(shards(utterances))
                if not (directory / f"asr_{i:05d}.jsonl").is_file()]
        self.run_shards(todo, f"ASR + frames ({spec.asr_ref})", work)
        transcripts: dict[str, Transcript] = {}
        for i in range(len(shards(utterances))):
            transcripts.update(read_transcripts(directory / f"asr_{i:05d}.jsonl"))
        return transcripts

    def extract_frames(self, utterances: Sequence[Utterance], spec: FeatureSpec
                       ) -> dict[str, Tensor]:
        directory = self.audio_dir(spec, utterances)
        prepare_dir(directory, {"audio": spec.audio, "compute_type": spec.compute_type,
                                "n": len(utterances)})
        stage = AudioStage(spec.audio, spec.compute_type, self.threads, spec.window_s)

        def work(index: int, shard: list[Utterance]) -> None:
            save_tensors(stage.frames(shard), directory / f"shard_{index:05d}.safetensors")

        todo = [(i, s) for i, s in enumerate(shards(utterances))
                if not (directory / f"shard_{i:05d}.safetensors").is_file()]
        self.run_shards(todo, f"audio frames ({spec.audio})", work)
        frames: dict[str, Tensor] = {}
        for i in range(len(shards(utterances))):
            frames.update(load_tensors(directory / f"shard_{i:05d}.safetensors"))
        return frames

    def run_shards(self, todo: list[tuple[int, list[Utterance]]], what: str,
                   work: Callable[[int, list[Utterance]], None]) -> None:
        from tqdm import tqdm

        if not todo:
            return
        with tqdm(total=sum(len(s) for _, s in todo), desc=what, unit="utt",
                  disable=not self.progress) as bar:
            for index, shard in todo:
                work(index, shard)
                bar.update(len(shard))

    def extract_functionals(self, utterances: Sequence[Utterance]) -> dict[str, Tensor]:
        """Prosody functionals (pitch, energy, log-mel statistics) of every utterance."""
        try:
            from models.encoders.prosody import ProsodyEncoder, functionals
        except ImportError as exc:
            raise FeatureCacheError(f"prosody functionals need models.encoders.prosody: {exc}") \
                from exc
        key = digest({"v": CACHE_VERSION, "corpus": corpus_fingerprint(utterances)})
        directory = self.root / f"prosody-{key}"
        prepare_dir(directory, {"functionals": "models.encoders.prosody", "n": len(utterances)})
        todo = [(i, s) for i, s in enumerate(shards(utterances))
                if not (directory / f"shard_{i:05d}.safetensors").is_file()]
        encoder = ProsodyEncoder()

        def work(index: int, shard: list[Utterance]) -> None:
            tensors = {u.id: functionals(load_audio(u), encoder).float() for u in shard}
            save_tensors(tensors, directory / f"shard_{index:05d}.safetensors")

        self.run_shards(todo, "prosody functionals", work)
        result: dict[str, Tensor] = {}
        for i in range(len(shards(utterances))):
            result.update(load_tensors(directory / f"shard_{i:05d}.safetensors"))
        return result

    def extract_text(self, utterances: Sequence[Utterance], spec: FeatureSpec,
                     transcripts: dict[str, Transcript], audio: dict[str, Tensor]
                     ) -> dict[str, Tensor]:
        directory = self.text_dir(spec, utterances)
        prepare_dir(directory, {"text": spec.text, "transcripts": spec.transcripts,
                                "words": spec.words, "layers": spec.text_layers,
                                "n": len(utterances)})
        todo = [(i, s) for i, s in enumerate(shards(utterances))
                if not (directory / f"shard_{i:05d}.safetensors").is_file()]
        encoder: list[Any] = []  # loaded on first use

        def work(index: int, shard: list[Utterance]) -> None:
            if not encoder:
                from models.encoders.text import TextEncoder

                encoder.append(TextEncoder.load(spec.text, max_tokens=spec.max_tokens))
            tensors = encode_text(encoder[0], shard, spec, transcripts, audio)
            save_tensors(tensors, directory / f"shard_{index:05d}.safetensors")

        self.run_shards(todo, f"text ({spec.text})", work)
        result: dict[str, Tensor] = {}
        for i in range(len(shards(utterances))):
            result.update(load_tensors(directory / f"shard_{i:05d}.safetensors"))
        return result


def encode_text(encoder: Any, shard: list[Utterance], spec: FeatureSpec,
                transcripts: dict[str, Transcript], audio: dict[str, Tensor]
                ) -> dict[str, Tensor]:
    """Token states (and optionally word vectors/spans, layers) of one shard, built by
    ``models.features.text_features``: exactly what ``EmotionModel`` computes at serving."""
    features = text_features(encoder, [transcripts[u.id] for u in shard],
                             [int(audio[u.id].shape[0]) for u in shard],
                             words=spec.words, layers=spec.text_layers)
    tensors: dict[str, Tensor] = {}
    for utt, feats in zip(shard, features, strict=True):
        tensors[f"{utt.id}/text"] = feats.text.half()
        if feats.text_layers is not None:
            tensors[f"{utt.id}/text_layers"] = feats.text_layers.half()
        if feats.word_text is not None and feats.word_spans is not None:
            tensors[f"{utt.id}/word_text"] = feats.word_text.half()
            tensors[f"{utt.id}/word_spans"] = feats.word_spans.clone()
    return tensors


def spec_summary(spec: FeatureSpec) -> dict[str, Any]:
    return asdict(spec)


__all__ = ["FeatureCache", "FeatureSet", "FeatureSpec", "UtteranceFeatures"]
