"""Corpora whose labels are coded in the file names: CREMA-D, RAVDESS, EmoDB.

- CREMA-D ``AudioWAV/1001_DFA_ANG_XX.wav``: actor, sentence, emotion, intensity.
- RAVDESS ``Actor_01/03-01-05-01-02-01-01.wav``: modality, vocal channel, emotion, intensity,
  statement, repetition, actor (audio-only speech is modality 03, channel 01).
- EmoDB ``wav/03a01Fa.wav``: speaker, text code, emotion letter (German), version.

Each reads ``.wav`` or ``.flac`` files (e.g. a 16 kHz FLAC copy of RAVDESS).
"""

from __future__ import annotations

from pathlib import Path

from offline_training.corpora.base import (
    ANGRY,
    BORED,
    CALM,
    DISGUSTED,
    FEARFUL,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISED,
    Corpus,
    build_corpus,
    require_dir,
)
from offline_training.errors import CorpusError
from offline_training.records import Utterance

CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.", "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.", "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.", "WSI": "We'll stop in a couple of minutes.",
}
CREMAD_CLASSES = (ANGRY, DISGUSTED, FEARFUL, HAPPY, NEUTRAL, SAD)
CREMAD_LABELS = {"ANG": ANGRY, "DIS": DISGUSTED, "FEA": FEARFUL, "HAP": HAPPY,
                 "NEU": NEUTRAL, "SAD": SAD}

RAVDESS_SENTENCES = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
RAVDESS_CLASSES = (NEUTRAL, CALM, HAPPY, SAD, ANGRY, FEARFUL, DISGUSTED, SURPRISED)
RAVDESS_LABELS = {"01": NEUTRAL, "02": CALM, "03": HAPPY, "04": SAD, "05": ANGRY,
                  "06": FEARFUL, "07": DISGUSTED, "08": SURPRISED}

EMODB_SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMODB_CLASSES = (ANGRY, BORED, DISGUSTED, FEARFUL, HAPPY, SAD, NEUTRAL)
EMODB_LABELS = {"W": ANGRY, "L": BORED, "E": DISGUSTED, "A": FEARFUL, "F": HAPPY, "T": SAD,
                "N": NEUTRAL}


AUDIO_SUFFIXES = (".wav", ".flac")  # the releases ship WAV; re-encoded copies are often FLAC


def audio_files(directory: Path, corpus: str) -> list[Path]:
    """WAV or FLAC files under ``directory``, sorted (a clip present in both formats is two
    utterances with one id, which the corpus check reports)."""
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise CorpusError(f"{corpus}: no .wav or .flac files under '{directory}'")
    return files


def bad_name(corpus: str, path: Path, expected: str) -> CorpusError:
    return CorpusError(f"{corpus}: file name '{path.name}' does not follow the corpus naming "
                       f"scheme ({expected}); remove foreign files from the directory")


def load_cremad(root: Path) -> Corpus:
    """CREMA-D from ``root`` (holding ``AudioWAV/``, or the wav files themselves)."""
    require_dir(root, "CREMA-D", "pass the CREMA-D directory (with AudioWAV/)")
    wav_dir = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    utterances = []
    for path in audio_files(wav_dir, "CREMA-D"):
        parts = path.stem.split("_")
        if len(parts) != 4 or parts[1] not in CREMAD_SENTENCES:
            raise bad_name("CREMA-D", path, "1001_DFA_ANG_XX.wav")
        actor, sentence, emotion, level = parts
        utterances.append(Utterance(id=path.stem, path=str(path),
                                    text=CREMAD_SENTENCES[sentence], label=emotion,
                                    speaker=actor, session=actor, kind=level))
    return build_corpus("cremad", utterances, CREMAD_LABELS, CREMAD_CLASSES)


def load_ravdess(root: Path, include_song: bool = False) -> Corpus:
    """RAVDESS audio-only files from ``root`` (holding ``Actor_01`` ...)."""
    require_dir(root, "RAVDESS", "pass the directory holding Actor_01 .. Actor_24")
    utterances = []
    for path in audio_files(root, "RAVDESS"):
        parts = path.stem.split("-")
        if len(parts) != 7 or parts[4] not in RAVDESS_SENTENCES:
            raise bad_name("RAVDESS", path, "03-01-05-01-02-01-01.wav or .flac")
        modality, channel, emotion, intensity, statement, repetition, actor = parts
        if modality != "03" or (channel == "02" and not include_song):
            continue
        utterances.append(Utterance(id=path.stem, path=str(path),
                                    text=RAVDESS_SENTENCES[statement], label=emotion,
                                    speaker=f"Actor_{actor}", session=f"Actor_{actor}",
                                    kind=f"intensity{intensity}"))
    return build_corpus("ravdess", utterances, RAVDESS_LABELS, RAVDESS_CLASSES)


def load_emodb(root: Path) -> Corpus:
    """EmoDB from ``root`` (holding ``wav/``, or the wav files themselves)."""
    require_dir(root, "EmoDB", "pass the EmoDB directory (with wav/)")
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    utterances = []
    for path in audio_files(wav_dir, "EmoDB"):
        stem = path.stem
        if len(stem) != 7 or stem[2:5] not in EMODB_SENTENCES:
            raise bad_name("EmoDB", path, "03a01Fa.wav")
        utterances.append(Utterance(id=stem, path=str(path), text=EMODB_SENTENCES[stem[2:5]],
                                    label=stem[5], speaker=stem[:2], session=stem[:2]))
    return build_corpus("emodb", utterances, EMODB_LABELS, EMODB_CLASSES)
