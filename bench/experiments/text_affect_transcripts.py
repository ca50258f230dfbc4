"""The GoEmotions text branch read zero-shot on speech corpora's transcripts (issue 16).

models/text_affect.py's 28 label scores are mapped to 4 classes (offline_training.text_affect:
the group with the highest label score) and compared with each clip's emotion label, using the
corpus' gold text: the synthetic corpus (per item kind: the words carry the emotion in
'congruent' and 'words' items only) and RAVDESS 4 classes (two fixed neutral sentences: the
right answer of a text model is 'neutral' for every clip, UA 0.25).

    .venv/bin/python bench/experiments/text_affect_transcripts.py SYNTH_MANIFEST RAVDESS_MANIFEST
      (manifests from: emotion-train prepare synth / prepare ravdess)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.encoders.text import TextEncoder  # noqa: E402
from models.text_affect import load_text_affect  # noqa: E402
from offline_training.text_affect import FOUR_CLASSES, embed, four_class  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The default model's RAVDESS label map (calm as neutral; fearful, disgusted, surprised out).
RAVDESS_4 = json.loads((ROOT / "configs/label_maps/ravdess-4class-calm-as-neutral.json")
                       .read_text())


def main() -> None:
    torch.set_num_threads(1)
    encoder, affect = TextEncoder.load(), load_text_affect()
    classes = list(FOUR_CLASSES)
    for name, path in (("synth", sys.argv[1]), ("ravdess", sys.argv[2])):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        if name == "ravdess":
            rows = [{**r, "label": RAVDESS_4[r["label"]]} for r in rows if RAVDESS_4[r["label"]]]
        x = embed(encoder, [r["text"] for r in rows])
        predicted = four_class(affect.scores(torch.as_tensor(x)).numpy()).argmax(1)
        y = np.array([classes.index(r["label"]) for r in rows])
        out = {"n": len(rows), "accuracy": float(accuracy_score(y, predicted)),
               "ua": float(balanced_accuracy_score(y, predicted))}
        for kind in sorted({r.get("kind") or "" for r in rows}) if name == "synth" else ():
            mask = np.array([r.get("kind") == kind for r in rows])
            out[kind] = float(accuracy_score(y[mask], predicted[mask]))
        print(name, json.dumps(out))


if __name__ == "__main__":
    main()
