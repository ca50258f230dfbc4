"""Speech with known words for tests and the bundled sample, synthesised with espeak-ng.

Run ``.venv/bin/python -m harness.speech`` (from the repository root) to rebuild
``streamer/assets/sample_conversation.wav``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.audio import SAMPLE_RATE


@dataclass(frozen=True)
class Turn:
    text: str
    voice: str = "en-us+m3"
    pitch: int = 50  # espeak -p
    speed: int = 165  # espeak -s, words per minute
    amplitude: int = 100  # espeak -a


# A short two-party conversation with clearly different emotions per turn.
SAMPLE_TURNS = (
    Turn("Hello, thank you for calling. How can I help you today?", "en-us+f2", 55, 165, 100),
    Turn("I am furious. You charged me twice and nobody answers my emails!",
         "en-us+m3", 60, 200, 180),
    Turn("I am sorry about that. Let me fix it for you right now.", "en-us+f2", 50, 160, 100),
    Turn("Oh that is wonderful, thank you so much, I am really happy now!",
         "en-us+m3", 80, 185, 130),
    Turn("My father passed away last week, and I feel so alone.", "en-us+m3", 25, 120, 70),
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(turn: Turn) -> np.ndarray:
    """One turn as 16 kHz mono float32."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", turn.voice, "-p", str(turn.pitch), "-s",
         str(turn.speed), "-a", str(turn.amplitude), turn.text],
        check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def conversation(turns: tuple[Turn, ...] | list[Turn], gap_s: float = 1.2,
                 lead_s: float = 0.5) -> np.ndarray:
    """Turns separated by ``gap_s`` of silence, with ``lead_s`` of silence around them."""
    silence = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    lead = np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)
    parts = [lead]
    for turn in turns:
        parts += [synthesize(turn), silence]
    parts.append(lead)
    return np.concatenate(parts)


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parents[1] / "streamer" / "assets" / "sample_conversation.wav")
    write_wav(out, conversation(SAMPLE_TURNS))
    print(f"wrote {out}")
