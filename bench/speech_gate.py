"""Does the speech gate abstain on non-speech and claim real speech?

Two measurements in one run:

1. Non-speech signals (noise, tones, square wave, clicks, chords, DC offset, NaN, clipped
   speech) and the bundled sample conversation, each through the whole pipeline
   (segmenter, ASR, gate, fusion) as a file at full speed: how many utterances the VAD
   opened and how many were published with ``speech: false``.
2. Real human speech: RAVDESS clips (``../shared/corpora/ravdess``), each as one
   utterance through the ASR and the gate: the share wrongly judged not speech.

Usage (from the repository root)::

    .venv/bin/python bench/speech_gate.py --per-actor 12 --out bench/results/speech_gate.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.speech import SAMPLE_TURNS, conversation  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from offline_training.audio import load_audio  # noqa: E402
from offline_training.records import Utterance as CorpusUtterance  # noqa: E402
from streamer.apps.pipeline import run_pipeline  # noqa: E402
from streamer.audio import speech_gate  # noqa: E402
from streamer.core.config import load_config  # noqa: E402
from streamer.engine.loading import Models, load_models  # noqa: E402
from streamer.sources.local import FileSource  # noqa: E402

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"


def signals(rng: np.random.Generator, speech: np.ndarray, gain: float = 1.0,
            fscale: float = 1.0) -> dict[str, np.ndarray]:
    """3 s of each kind of non-speech, with 0.5 s of silence around it; ``gain`` scales the
    levels of the level-free kinds, ``fscale`` their frequencies (variants)."""
    n = 3 * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE * fscale
    white = rng.standard_normal(n)
    pink = np.cumsum(white) - np.convolve(np.cumsum(white), np.ones(400) / 400, "same")
    chords = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * (
        0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 2 * t)))
    clicks = np.zeros(n)
    clicks[:: SAMPLE_RATE // 7] = 0.9
    nan_noise = 0.1 * white.copy()
    nan_noise[::997] = np.nan
    loud = np.clip(speech[: n] * 30.0, -1.0, 1.0)
    out = {
        "white noise -20 dBFS": 0.1 * white,
        "white noise -40 dBFS": 0.01 * white,
        "pink noise": 0.3 * pink / np.max(np.abs(pink)),
        "sine 440 Hz": 0.3 * np.sin(2 * np.pi * 440 * t),
        "sine 150 Hz": 0.3 * np.sin(2 * np.pi * 150 * t),
        "square 100 Hz": 0.3 * np.sign(np.sin(2 * np.pi * 100 * t)),
        "chirp 100-3000 Hz": 0.3 * np.sin(2 * np.pi * (100 + 1450 * t / 3) * t),
        "music-like chords": 0.2 * chords,
        "clicks in silence": clicks,
        "DC offset": np.full(n, 0.4),
        "NaN in noise": nan_noise,
        "clipped speech (x30)": loud,
    }
    fixed = {"DC offset", "NaN in noise", "clipped speech (x30)"}  # their level is the point
    pad = np.zeros(SAMPLE_RATE // 2)
    return {k: np.concatenate([pad, v if k in fixed else np.clip(v * gain, -1, 1),
                               pad]).astype(np.float32) for k, v in out.items()}


async def through_pipeline(models: Models, audio: np.ndarray, tmp: Path) -> list[dict]:
    path = tmp / "input.wav"
    sf.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")  # float WAV: NaN survives
    config = load_config(None, ["source.realtime=false", "websocket.enabled=false",
                                "stdout.enabled=false", f"source.path={path}"])
    seen: list[dict] = []

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        subscription = bus.subscribe("bench", maxsize=100_000)

        async def read() -> None:
            while True:
                seen.append(await subscription.get())

        asyncio.get_running_loop().create_task(read())

    await run_pipeline(config, FileSource(config.source), models, on_ready=ready)
    await asyncio.sleep(0.1)
    return [e for e in seen if e["type"] == "utterance.emotion"]


def ravdess_clips(per_actor: int) -> list[Path]:
    clips = []
    for actor in sorted(RAVDESS.glob("Actor_*")):
        files = sorted(actor.glob("*.flac"))
        step = max(1, len(files) // per_actor)
        clips += files[::step][:per_actor]
    return clips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-actor", type=int, default=12, help="RAVDESS clips per actor")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--variants", type=int, default=1,
                        help="random variants of every non-speech kind (level -12..+6 dB, "
                             "frequencies x0.6..1.6, new noise); issue 10 asks for >= 100 clips")
    args = parser.parse_args()
    config = load_config(None, [])
    models = load_models(config)
    rng = np.random.default_rng(0)
    sample = conversation(SAMPLE_TURNS)
    result: dict[str, Any] = {"gate": config.gate.__dict__, "signals": {}, "ravdess": {}}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {"sample conversation (speech)": sample, **signals(rng, sample)}
        for v in range(1, args.variants):
            gain, fscale = 10 ** (rng.uniform(-12, 6) / 20), rng.uniform(0.6, 1.6)
            inputs.update({f"{k} #{v}": a for k, a in signals(rng, sample, gain, fscale).items()})
        for name, audio in inputs.items():
            emotions = asyncio.run(through_pipeline(models, audio, Path(tmp)))
            row = {"utterances": len(emotions),
                   "nonspeech": sum(not e["speech"] for e in emotions),
                   "reasons": dict(Counter(e["abstain_reason"] for e in emotions
                                           if not e["speech"])),
                   "claimed": [f"{e['label']} {e['confidence']:.2f} '{e['text']}'"
                               for e in emotions if e["speech"]]}
            result["signals"][name] = row
            print(f"{name:30s} utterances {row['utterances']:2d}  not speech "
                  f"{row['nonspeech']:2d}  {row['reasons']}  claimed {row['claimed']}",
                  flush=True)
    nonspeech = {k: r for k, r in result["signals"].items() if "(speech)" not in k}
    result["nonspeech_summary"] = {
        "clips": len(nonspeech),
        "clips_opening_an_utterance": sum(r["utterances"] > 0 for r in nonspeech.values()),
        "utterances": sum(r["utterances"] for r in nonspeech.values()),
        "class_claims": sum(len(r["claimed"]) for r in nonspeech.values())}
    print(f"non-speech: {result['nonspeech_summary']}", flush=True)
    if RAVDESS.is_dir():
        reasons: Counter[str] = Counter()
        clips = ravdess_clips(args.per_actor)
        for path in clips:
            audio = load_audio(CorpusUtterance(id=path.stem, path=str(path), text="", label="",
                                               speaker=""))
            reason = speech_gate.check_audio(audio, config.gate)
            if reason is None:
                reason = speech_gate.check_transcript(models.asr.transcribe(audio), config.gate)
            reasons[reason or "speech"] += 1
        result["ravdess"] = {"clips": len(clips), "outcomes": dict(reasons),
                             "false_abstention_rate": 1 - reasons["speech"] / len(clips)}
        print(f"RAVDESS: {len(clips)} clips: {dict(reasons)}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
