"""IEMOCAP, as released: ``Session1..5/dialog/{EmoEvaluation,transcriptions}`` and
``Session*/sentences/wav/<dialog>/<utterance>.wav``.

Speaker = session + the gender letter of the utterance (``Ses01F_impro01_M003`` is the male
actor of session 1: ``Ses01M``). Dialog order follows the start times in EmoEvaluation.
Class sets: ``4`` (angry, happy incl. excited, sad, neutral) and ``7`` (angry, excited, happy,
sad, frustrated, surprised, neutral; the self/cross-attention paper's set).
"""

from __future__ import annotations

import re
from pathlib import Path

from offline_training.corpora.base import (
    ANGRY,
    EXCITED,
    FRUSTRATED,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISED,
    Corpus,
    LabelMap,
    build_corpus,
    require_dir,
)
from offline_training.errors import CorpusError
from offline_training.records import Utterance

RAW_LABELS = ("neu", "fru", "sad", "sur", "ang", "hap", "exc", "fea", "dis", "oth", "xxx")
DROPPED = {"fea": None, "dis": None, "oth": None, "xxx": None}
LABEL_MAPS: dict[str, tuple[tuple[str, ...], LabelMap]] = {
    "4": ((ANGRY, HAPPY, SAD, NEUTRAL),
          {"ang": ANGRY, "hap": HAPPY, "exc": HAPPY, "sad": SAD, "neu": NEUTRAL,
           "fru": None, "sur": None, **DROPPED}),
    "7": ((ANGRY, EXCITED, HAPPY, SAD, FRUSTRATED, SURPRISED, NEUTRAL),
          {"ang": ANGRY, "exc": EXCITED, "hap": HAPPY, "sad": SAD, "fru": FRUSTRATED,
           "sur": SURPRISED, "neu": NEUTRAL, **DROPPED}),
}
EVAL_LINE = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\s+(\S+)\s+(\S+)\s+\[")
TRANSCRIPT_LINE = re.compile(r"^(\S+) \[[^\]]*\]:\s?(.*)$")


def parse_evaluation(path: Path) -> list[tuple[float, str, str]]:
    """(start, utterance id, raw label) for each utterance of one EmoEvaluation file."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = EVAL_LINE.match(line)
        if match:
            rows.append((float(match.group(1)), match.group(3), match.group(4)))
    return rows


def parse_transcription(path: Path) -> dict[str, str]:
    texts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = TRANSCRIPT_LINE.match(line.strip())
        if match:
            texts[match.group(1)] = match.group(2).strip()
    return texts


def speaker_of(utt_id: str) -> str:
    """``Ses01F_impro01_M003`` -> ``Ses01M``."""
    return f"{utt_id[:5]}{utt_id.rsplit('_', 1)[-1][0]}"


def read_session(session_dir: Path, session: str) -> list[Utterance]:
    eval_dir = require_dir(session_dir / "dialog" / "EmoEvaluation", "IEMOCAP",
                           "expected Session*/dialog/EmoEvaluation")
    trans_dir = require_dir(session_dir / "dialog" / "transcriptions", "IEMOCAP",
                            "expected Session*/dialog/transcriptions")
    utterances = []
    for eval_file in sorted(eval_dir.glob("*.txt")):
        dialog = eval_file.stem
        trans_file = trans_dir / f"{dialog}.txt"
        if not trans_file.is_file():
            raise CorpusError(f"IEMOCAP: '{eval_file}' has no transcription '{trans_file}'")
        texts = parse_transcription(trans_file)
        for order, (_start, utt_id, raw) in enumerate(sorted(parse_evaluation(eval_file))):
            wav = session_dir / "sentences" / "wav" / dialog / f"{utt_id}.wav"
            if not wav.is_file():
                raise CorpusError(f"IEMOCAP: audio '{wav}' of utterance {utt_id} is missing")
            if utt_id not in texts:
                raise CorpusError(f"IEMOCAP: utterance {utt_id} has no line in '{trans_file}'")
            utterances.append(Utterance(
                id=utt_id, path=str(wav), text=texts[utt_id], label=raw,
                speaker=speaker_of(utt_id), session=session, dialog_id=dialog, order=order,
                kind="impro" if "_impro" in dialog else "script"))
    return utterances


def load_iemocap(root: Path, classes: str = "4") -> Corpus:
    """Read IEMOCAP from ``root`` (the directory that holds Session1..Session5)."""
    if classes not in LABEL_MAPS:
        raise CorpusError(f"IEMOCAP: class set '{classes}' unknown; use one of "
                          f"{sorted(LABEL_MAPS)}")
    require_dir(root, "IEMOCAP", "pass the directory that holds Session1..Session5")
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    if not sessions:
        raise CorpusError(f"IEMOCAP: no Session* directories under '{root}'; pass the "
                          "IEMOCAP_full_release directory")
    utterances = [u for s in sessions for u in read_session(s, s.name)]
    class_list, label_map = LABEL_MAPS[classes]
    return build_corpus(f"iemocap{classes}", utterances, label_map, class_list)
