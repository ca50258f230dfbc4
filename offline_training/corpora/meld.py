"""MELD, as released: ``{train,dev,test}_sent_emo.csv`` and the mp4 clips
(``train_splits/``, ``dev_splits_complete/``, ``output_repeated_splits_test/``,
each ``dia<D>_utt<U>.mp4``). Audio is extracted once with ffmpeg (16 kHz mono wav) into
``audio_dir`` (default ``<root>/audio16k``). The split is the session (fixed-split protocol).
"""

from __future__ import annotations

import csv
from pathlib import Path

from offline_training.corpora.base import (
    ANGRY,
    DISGUSTED,
    FEARFUL,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISED,
    Corpus,
    build_corpus,
    require_file,
)
from offline_training.errors import CorpusError
from offline_training.records import Utterance
from offline_training.tools import run_tool

SPLITS = {"train": "train_splits", "dev": "dev_splits_complete",
          "test": "output_repeated_splits_test"}
CLASSES = (NEUTRAL, HAPPY, SAD, ANGRY, SURPRISED, FEARFUL, DISGUSTED)
LABEL_MAP = {"neutral": NEUTRAL, "joy": HAPPY, "sadness": SAD, "anger": ANGRY,
             "surprise": SURPRISED, "fear": FEARFUL, "disgust": DISGUSTED}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def extract_audio(video: Path, wav: Path) -> None:
    """ffmpeg: first audio stream -> 16 kHz mono 16-bit wav."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_suffix(".part.wav")
    run_tool(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-vn",
              "-ac", "1", "-ar", "16000", "-sample_fmt", "s16", str(tmp)])
    tmp.replace(wav)


def read_split(root: Path, split: str, audio_dir: Path) -> list[tuple[Utterance, Path]]:
    csv_path = require_file(root / f"{split}_sent_emo.csv", "MELD",
                            "pass the MELD.Raw directory that holds the official CSVs")
    video_dir = root / SPLITS[split]
    with csv_path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"MELD: '{csv_path}' lacks columns {missing}")
        rows = list(reader)
    result = []
    for row in rows:
        dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        name = f"dia{dia}_utt{utt}"
        result.append((Utterance(
            id=f"{split}_{name}", path=str(audio_dir / split / f"{name}.wav"),
            text=row["Utterance"].strip(), label=row["Emotion"].strip().lower(),
            speaker=row["Speaker"].strip(), session=split, dialog_id=f"{split}_dia{dia}",
            order=utt), video_dir / f"{name}.mp4"))
    return result


def load_meld(root: Path, audio_dir: Path | None = None,
              splits: tuple[str, ...] = ("train", "dev", "test"), progress: bool = True) -> Corpus:
    """Read MELD from ``root``; extract missing wavs from the mp4 clips with ffmpeg."""
    from tqdm import tqdm

    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CorpusError(f"MELD: unknown split(s) {unknown}; use {sorted(SPLITS)}")
    audio_dir = audio_dir or root / "audio16k"
    pairs = [pair for split in splits for pair in read_split(root, split, audio_dir)]
    todo = [(utt, video) for utt, video in pairs if not Path(utt.path).is_file()]
    missing = [str(video) for _, video in todo if not video.is_file()]
    if missing:
        raise CorpusError(f"MELD: {len(missing)} clip(s) are missing, e.g. '{missing[0]}'; "
                          "unpack MELD.Raw/{train,dev,test}.tar.gz under the root")
    for utt, video in tqdm(todo, desc="MELD: extracting audio", disable=not progress):
        extract_audio(video, Path(utt.path))
    return build_corpus("meld", [utt for utt, _ in pairs], LABEL_MAP, CLASSES)
