"""nEMO (Christop 2024, LREC-COLING): acted Polish speech, 9 actors, 6 emotions.

``<root>/data.tsv`` lists ``file_id, emotion, raw_text, normalized_text, speaker_id, gender,
age``; the audio is under ``<root>/samples/`` (the release's WAV, or a re-encoded copy such as
the Ogg Opus files in shared/corpora/nemo: any format soundfile reads).
"""

from __future__ import annotations

import csv
from pathlib import Path

from offline_training.corpora.base import (
    ANGRY,
    FEARFUL,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISED,
    Corpus,
    build_corpus,
    require_dir,
    require_file,
)
from offline_training.errors import CorpusError
from offline_training.records import Utterance

NEMO_CLASSES = (ANGRY, FEARFUL, HAPPY, NEUTRAL, SAD, SURPRISED)
NEMO_LABELS = {"anger": ANGRY, "fear": FEARFUL, "happiness": HAPPY, "neutral": NEUTRAL,
               "sadness": SAD, "surprised": SURPRISED}
NEMO_COLUMNS = ("file_id", "emotion", "raw_text", "speaker_id")


def load_nemo(root: Path) -> Corpus:
    """nEMO from ``root`` (holding ``data.tsv`` and ``samples/``)."""
    require_dir(root, "nEMO", "pass the nEMO directory (with data.tsv and samples/)")
    table = require_file(root / "data.tsv", "nEMO", "the corpus release has data.tsv at its top")
    samples = require_dir(root / "samples", "nEMO", "the corpus release keeps audio in samples/")
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    missing = [c for c in NEMO_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise CorpusError(f"nEMO: {table} lacks the columns {missing}; is it the release's "
                          "data.tsv?")
    utterances = []
    for row in rows:
        path = samples / row["file_id"]
        if not path.is_file():
            raise CorpusError(f"nEMO: {table} lists '{row['file_id']}' but {path} does not "
                              "exist; restore the file or remove its row")
        speaker = row["speaker_id"]
        utterances.append(Utterance(id=path.stem, path=str(path),
                                    text=row["raw_text"], label=row["emotion"],
                                    speaker=speaker, session=speaker,
                                    extra={"gender": row.get("gender", "")}))
    return build_corpus("nemo", utterances, NEMO_LABELS, NEMO_CLASSES)
