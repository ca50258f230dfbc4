"""Transcripts for training: the corpus' gold text, or faster-whisper ASR (what the streamer
has). ASR runs through the same ``models.asr.AsrEngine`` the streamer uses, so training text,
word times and Whisper frames are exactly what serving produces (one encoder pass gives all
three). Transcripts are ``models.asr.Transcript``, the one transcript type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.asr import DEFAULT_WINDOW_S, AsrEngine, AsrOptions, Transcript, Word
from offline_training.errors import FeatureCacheError

SOURCES = ("gold", "asr")


def transcript_json(utt_id: str, transcript: Transcript) -> dict[str, Any]:
    return {"id": utt_id, "text": transcript.text,
            "words": [[w.word, w.start, w.end, w.probability] for w in transcript.words]}


@dataclass(frozen=True)
class AsrResult:
    transcript: Transcript
    frames: np.ndarray  # (T, D) Whisper encoder frames of the utterance (ASR window)


class WhisperAsr:
    """ASR + encoder frames in one pass, via ``models.asr.AsrEngine`` (beam 1, word times)."""

    def __init__(self, whisper_model: Any, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.engine = AsrEngine(AsrOptions(word_timestamps=True, window_s=window_s),
                                whisper_model)

    def run(self, audio: np.ndarray) -> AsrResult:
        result = self.engine.transcribe(audio, final=True)
        # The cache keeps text and words; frames are stored separately (safetensors).
        return AsrResult(Transcript(result.text, result.words, result.language),
                         np.asarray(result.encoder_frames))


def read_transcripts(path: Path) -> dict[str, Transcript]:
    result = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            # Rows written before word probabilities were kept have three columns.
            words = tuple(Word(str(w[0]), float(w[1]), float(w[2]),
                               float(w[3]) if len(w) > 3 else 1.0) for w in row["words"])
            result[row["id"]] = Transcript(row["text"], words)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            raise FeatureCacheError(f"transcript cache '{path}' line {number} is damaged ({exc});"
                                    " delete the file to recompute it") from exc
    return result


def write_transcripts(transcripts: dict[str, Transcript], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for utt_id, transcript in transcripts.items():
            handle.write(json.dumps(transcript_json(utt_id, transcript), ensure_ascii=False) + "\n")
    tmp.replace(path)
