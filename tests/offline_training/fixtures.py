"""Tiny corpus trees that mimic each release's layout (generated audio, nothing licensed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(path: Path, seconds: float = 0.5, rate: int = 16000, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def make_iemocap(root: Path, sessions: int = 2) -> Path:
    """Session<n>/dialog/{EmoEvaluation,transcriptions} + sentences/wav, 5 utts per session."""
    labels = ["neu", "exc", "ang", "fru", "sad"]
    for s in range(1, sessions + 1):
        session = root / f"Session{s}"
        dialog = f"Ses0{s}F_impro01"
        eval_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans_lines = []
        for i, label in enumerate(labels):
            gender = "F" if i % 2 == 0 else "M"
            utt = f"{dialog}_{gender}{i:03d}"
            start = 10.0 - i  # written out of order: order must follow the start times
            eval_lines += [f"[{start:.4f} - {start + 0.5:.4f}]\t{utt}\t{label}\t[2.5, 3.0, 2.0]",
                           "C-E1:\tNeutral;\t()", ""]
            trans_lines.append(f"{utt} [{start:08.4f}-{start + 0.5:08.4f}]: words {i}")
            tone(session / "sentences" / "wav" / dialog / f"{utt}.wav")
        trans_lines.append(f"{dialog}_MXX0 [000.0000-001.0000]: [LAUGHTER]")
        (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (session / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(eval_lines))
        (session / "dialog" / "transcriptions").mkdir(parents=True)
        (session / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            "\n".join(trans_lines))
    return root


def make_meld(root: Path) -> Path:
    """{train,dev,test}_sent_emo.csv and mp4 clips made by ffmpeg from generated tones."""
    header = ("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,"
              "Episode,StartTime,EndTime")
    folders = {"train": "train_splits", "dev": "dev_splits_complete",
               "test": "output_repeated_splits_test"}
    emotions = ["joy", "anger", "neutral"]
    for split, folder in folders.items():
        rows = [header]
        for u, emotion in enumerate(emotions):
            rows.append(f'{u + 1},"Hello, number {u}",Ross,{emotion},positive,0,{u},1,1,'
                        f'"00:00:01,000","00:00:02,000"')
            wav = tone(root / "tmp" / f"{split}{u}.wav")
            (root / folder).mkdir(parents=True, exist_ok=True)
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav),
                            "-c:a", "aac", str(root / folder / f"dia0_utt{u}.mp4")], check=True)
        (root / f"{split}_sent_emo.csv").write_text("\n".join(rows) + "\n")
    return root


def make_cremad(root: Path) -> Path:
    for actor in ("1001", "1002"):
        for code in ("ANG", "HAP", "NEU"):
            tone(root / "AudioWAV" / f"{actor}_DFA_{code}_XX.wav")
    return root


def make_ravdess(root: Path) -> Path:
    for actor in ("01", "02"):
        for emotion in ("01", "03", "05"):
            tone(root / f"Actor_{actor}" / f"03-01-{emotion}-01-01-01-{actor}.wav")
        tone(root / f"Actor_{actor}" / f"03-02-03-01-01-01-{actor}.wav")  # song: skipped
    return root


def make_emodb(root: Path) -> Path:
    for speaker in ("03", "08"):
        for letter in ("W", "F", "N"):
            tone(root / "wav" / f"{speaker}a01{letter}a.wav")
    return root
