"""Transcripts for training: the corpus' gold text, or faster-whisper ASR (what the streamer
has). ASR runs through the streamer's own ``AsrEngine`` so training text, word times and
Whisper frames are exactly what serving produces (one encoder pass gives all three)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.inference import WordSpan
from offline_training.errors import FeatureCacheError

SOURCES = ("gold", "asr")


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[WordSpan, ...] = ()

    def to_json(self, utt_id: str) -> dict[str, Any]:
        return {"id": utt_id, "text": self.text,
                "words": [[w.word, w.start, w.end] for w in self.words]}


@dataclass(frozen=True)
class AsrResult:
    transcript: Transcript
    frames: np.ndarray  # (T, D) Whisper encoder frames of the utterance (30 s window)


class WhisperAsr:
    """ASR + encoder frames in one pass, via ``streamer.asr.AsrEngine`` (beam 1, word times)."""

    def __init__(self, whisper_model: Any) -> None:
        from streamer.asr import AsrEngine
        from streamer.config import AsrConfig

        self.engine = AsrEngine(AsrConfig(word_timestamps=True), whisper_model)

    def run(self, audio: np.ndarray) -> AsrResult:
        result = self.engine.transcribe(audio, final=True)
        words = tuple(WordSpan(w.word, float(w.start), float(w.end)) for w in result.words)
        return AsrResult(Transcript(result.text, words), np.asarray(result.encoder_frames))


def read_transcripts(path: Path) -> dict[str, Transcript]:
    result = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            words = tuple(WordSpan(str(w), float(s), float(e)) for w, s, e in row["words"])
            result[row["id"]] = Transcript(row["text"], words)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            raise FeatureCacheError(f"transcript cache '{path}' line {number} is damaged ({exc});"
                                    " delete the file to recompute it") from exc
    return result


def write_transcripts(transcripts: dict[str, Transcript], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for utt_id, transcript in transcripts.items():
            handle.write(json.dumps(transcript.to_json(utt_id), ensure_ascii=False) + "\n")
    tmp.replace(path)
