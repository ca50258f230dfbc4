"""Would Silero VAD, as a second-stage speech check, stop non-speech that webrtcvad lets in?

Issue 11, row 7 (measurement only; nothing in ``streamer/`` uses Silero). Per utterance:

- **webrtcvad alone**: the segmenter (``streamer/audio/segmenter.py``, shipped settings) opens an
  utterance or not; every utterance it opens would be published.
- **Silero VAD** (``silero-vad``, the ``bench`` extra; its TorchScript weights ship in the
  wheel, nothing is downloaded): its speech probability per 32 ms chunk over the same
  utterance audio. An utterance counts as speech at threshold ``t`` when at least
  ``--min-speech-ms`` of its chunks have probability >= ``t`` (Silero's own
  ``get_speech_timestamps`` default: 250 ms).
- **faster-whisper's Silero** (``faster_whisper/assets/silero_vad_v6.onnx``, in a package
  the project already depends on): the same measure, its batched ONNX form.
- **the existing gate** (``streamer/audio/speech_gate.py``): ``check_audio`` then
  ``check_transcript`` on the tiny.en transcript, as ``bench/speech_gate.py`` runs it.
- **gate + Silero**: published as speech only when both say speech.

Inputs: ``bench/speech_gate.py``'s generated non-speech clips (the same seed and variants,
so the same 108 clips), the bundled espeak-ng sample conversation through the segmenter,
and its RAVDESS sample (each clip one utterance). Silero's CPU time is measured per
utterance with ``torch.set_num_threads(1)`` (the whole utterance at once, as a check after
the segmenter would run it), and per 32 ms chunk fed one at a time on the espeak-ng
utterances (as a streaming check beside webrtcvad would run it).

Usage (from the repository root)::

    .venv/bin/python bench/experiments/silero_vad.py --variants 9 --per-actor 12 \
        --out bench/results/silero_vad.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Run as a script, this file's folder is sys.path[0], and this file's name would shadow the
# silero_vad package: import from the repository root instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parents[1]))

from bench.speech_gate import RAVDESS, ravdess_clips, signals  # noqa: E402
from harness.speech import SAMPLE_TURNS, conversation  # noqa: E402
from models.asr import AsrEngine  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from offline_training.audio import load_audio  # noqa: E402
from offline_training.records import Utterance as CorpusUtterance  # noqa: E402
from streamer.audio import speech_gate  # noqa: E402
from streamer.audio.segmenter import Segmenter  # noqa: E402
from streamer.core.config import AppConfig, load_config  # noqa: E402
from streamer.core.messages import Utterance  # noqa: E402
from streamer.engine.loading import load_asr  # noqa: E402

CHUNK = 512  # Silero's window at 16 kHz: 32 ms
CHUNK_MS = 1000 * CHUNK / SAMPLE_RATE


def nonspeech_inputs(sample: np.ndarray, variants: int) -> dict[str, np.ndarray]:
    """bench/speech_gate.py's clips: the same generator calls in the same order (seed 0),
    so variant ``#v`` here is variant ``#v`` there."""
    rng = np.random.default_rng(0)
    inputs = dict(signals(rng, sample))
    for v in range(1, variants):
        gain, fscale = 10 ** (rng.uniform(-12, 6) / 20), rng.uniform(0.6, 1.6)
        inputs.update({f"{k} #{v}": a for k, a in signals(rng, sample, gain, fscale).items()})
    return inputs


def segment(audio: np.ndarray, config: AppConfig) -> list[Utterance]:
    """The utterances webrtcvad opens, with the shipped segmenter settings."""
    segmenter = Segmenter(config.segmenter)
    events = segmenter.push(audio) + segmenter.flush()
    return [e for e in events if isinstance(e, Utterance)]


def clean(audio: np.ndarray) -> np.ndarray:
    """NaN/inf zeroed as the segmenter does (the gate rejects such audio anyway; Silero
    would only return NaN), padded to whole 32 ms chunks."""
    finite = np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0).astype(np.float32)
    return np.pad(finite, (0, -len(finite) % CHUNK))


class SileroPackage:
    """``silero-vad``'s TorchScript model, chunk after chunk with its LSTM state carried
    (``audio_forward`` resets the state first)."""

    name = "silero-vad"

    def __init__(self) -> None:
        # By name: to mypy, "silero_vad" next to this file is this file.
        package = importlib.import_module("silero_vad")
        self.model = package.load_silero_vad()  # the file in the wheel: no network

    def probs(self, audio: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.audio_forward(torch.from_numpy(audio), SAMPLE_RATE) \
                .squeeze(0).numpy()


class SileroFasterWhisper:
    """The Silero v6 ONNX model faster-whisper (a core dependency) ships for its
    ``vad_filter``: all chunks of an utterance in one batch, state not carried between
    them (faster-whisper's own approximation, cheaper)."""

    name = "faster-whisper"

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self.model = get_vad_model()

    def probs(self, audio: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(audio)).reshape(-1)


Backend = SileroPackage | SileroFasterWhisper


def streaming_chunk_ms(model: SileroPackage, audio: np.ndarray) -> list[float]:
    """Wall time of each 32 ms chunk fed one at a time, as a streaming check beside webrtcvad
    would run it: what the check adds after the end of speech is the last chunk or two."""
    model.model.reset_states()
    times = []
    with torch.inference_mode():
        for start in range(0, len(audio) - CHUNK + 1, CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(audio[start:start + CHUNK]))
            begin = time.perf_counter()
            model.model(chunk, SAMPLE_RATE)
            times.append(1000 * (time.perf_counter() - begin))
    model.model.reset_states()
    return times


def gate_reason(audio: np.ndarray, asr: AsrEngine, config: AppConfig) -> tuple[str, str]:
    """The existing gate's verdict ("speech" or the abstain reason) and the transcript."""
    reason = speech_gate.check_audio(audio, config.gate)
    if reason is not None:
        return reason, ""
    transcript = asr.transcribe(audio)
    return speech_gate.check_transcript(transcript, config.gate) or "speech", transcript.text


def measure(audio: np.ndarray, backends: list[Backend], asr: AsrEngine, config: AppConfig,
            thresholds: list[float]) -> dict[str, Any]:
    padded = clean(audio)
    vad = {}
    for backend in backends:
        begin = time.perf_counter()
        probs = backend.probs(padded)
        ms = 1000 * (time.perf_counter() - begin)
        vad[backend.name] = {
            "max": round(float(probs.max(initial=0.0)), 4),
            "speech_ms": {str(t): round(float((probs >= t).sum()) * CHUNK_MS, 1)
                          for t in thresholds},
            "cpu_ms": round(ms, 3)}
    gate, text = gate_reason(audio, asr, config)
    return {"duration_s": round(len(audio) / SAMPLE_RATE, 3), "gate": gate, "text": text,
            "vad": vad}


def summarize(clips: dict[str, list[dict[str, Any]]], backends: list[str],
              thresholds: list[float], min_speech_ms: float, speech: bool) -> dict[str, Any]:
    """Non-speech: clips with at least one utterance each rule would publish as speech (let
    through). Speech: utterances each rule would reject (false rejections)."""
    rows = [r for utts in clips.values() for r in utts]

    def passes_gate(r: dict[str, Any]) -> bool:
        return bool(r["gate"] == "speech")

    def vad_speech(r: dict[str, Any], backend: str, t: float) -> bool:
        return bool(r["vad"][backend]["speech_ms"][str(t)] >= min_speech_ms)

    def vad_rule(backend: str, t: float, with_gate: bool) -> Callable[[dict[str, Any]], bool]:
        def rule(r: dict[str, Any]) -> bool:
            return (not with_gate or passes_gate(r)) and vad_speech(r, backend, t)
        return rule

    rules: dict[str, Callable[[dict[str, Any]], bool]] = {
        "webrtcvad alone": lambda r: True, "existing gate": passes_gate}
    for b in backends:
        for t in thresholds:
            rules[f"{b} >= {t}"] = vad_rule(b, t, with_gate=False)
            rules[f"gate + {b} >= {t}"] = vad_rule(b, t, with_gate=True)
    if speech:
        return {"utterances": len(rows),
                "false_rejections": {name: sum(not rule(r) for r in rows)
                                     for name, rule in rules.items()},
                "rejected": {name: [f"{r['gate']} '{r['text']}' " + " ".join(
                    f"{b} max {r['vad'][b]['max']:.2f}" for b in backends)
                    for r in rows if not rule(r)]
                    for name, rule in rules.items() if name != "webrtcvad alone"}}
    kinds = sorted({name.split(" #")[0] for name in clips})
    return {"clips": len(clips), "utterances": len(rows),
            "clips_let_through": {name: sum(any(rule(r) for r in utts)
                                            for utts in clips.values())
                                  for name, rule in rules.items()},
            # Clipped speech is speech: a speech detector passing it is right, the gate
            # rejects it as unusable audio. Hence the count per kind.
            "clips_let_through_per_kind": {
                kind: {name: sum(any(rule(r) for r in utts) for clip, utts in clips.items()
                                 if clip.split(" #")[0] == kind)
                       for name, rule in rules.items()} for kind in kinds},
            "utterances_let_through": {name: sum(rule(r) for r in rows)
                                       for name, rule in rules.items()}}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2),
            "max": round(float(np.max(values)), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=9,
                        help="variants of each non-speech kind, as bench/speech_gate.py")
    parser.add_argument("--per-actor", type=int, default=12, help="RAVDESS clips per actor")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--min-speech-ms", type=float, default=250.0,
                        help="chunks at or above the threshold needed to call it speech")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        package = SileroPackage()
    except ImportError:
        parser.error("silero-vad is not installed: .venv/bin/python -m pip install -e '.[bench]'")
    torch.set_num_threads(1)  # importing silero_vad does this too (a global side effect)
    backends: list[Backend] = [package, SileroFasterWhisper()]
    names = [b.name for b in backends]
    config = load_config(None, [])
    _, asr = load_asr(config)
    measure(np.zeros(SAMPLE_RATE, dtype=np.float32), backends, asr, config, args.thresholds)

    sample = conversation(SAMPLE_TURNS)
    nonspeech: dict[str, list[dict[str, Any]]] = {}
    for name, audio in nonspeech_inputs(sample, args.variants).items():
        nonspeech[name] = [measure(u.audio, backends, asr, config, args.thresholds)
                           for u in segment(audio, config)]
        print(f"{name:30s} " + "  ".join(
            f"[{r['gate']} " + " ".join(f"{b} max {v['max']:.2f} {v['speech_ms']}"
                                        for b, v in r["vad"].items()) + "]"
            for r in nonspeech[name]), flush=True)
    speech_audio = [u.audio for u in segment(sample, config)]
    espeak = {"sample conversation": [measure(a, backends, asr, config, args.thresholds)
                                      for a in speech_audio]}
    ravdess: dict[str, list[dict[str, Any]]] = {}
    if RAVDESS.is_dir():
        for path in ravdess_clips(args.per_actor):
            audio = load_audio(CorpusUtterance(id=path.stem, path=str(path), text="",
                                               label="", speaker=""))
            ravdess[path.stem] = [measure(audio, backends, asr, config, args.thresholds)]
    else:
        print(f"no RAVDESS at {RAVDESS}: speech measured on espeak-ng only", flush=True)

    everything = [r for group in (nonspeech, espeak, ravdess)
                  for utts in group.values() for r in utts]
    cost: dict[str, Any] = {
        "utterance_s_p50": round(float(np.median([r["duration_s"] for r in everything])), 2)}
    for b in names:
        cost[b] = percentiles([r["vad"][b]["cpu_ms"] for r in everything])
        cost[b]["ms_per_audio_s_p50"] = round(float(np.median(
            [r["vad"][b]["cpu_ms"] / r["duration_s"] for r in everything])), 2)
    cost["silero-vad streamed, per 32 ms chunk"] = percentiles(
        [ms for a in speech_audio for ms in streaming_chunk_ms(package, clean(a))])
    result: dict[str, Any] = {
        "silero_vad": getattr(sys.modules["silero_vad"], "__version__", "?"),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "rule": f"speech when >= {args.min_speech_ms:g} ms of 32 ms chunks have "
                "probability >= threshold",
        "gate": config.gate.__dict__, "segmenter": config.segmenter.__dict__,
        "nonspeech": summarize(nonspeech, names, args.thresholds, args.min_speech_ms,
                               speech=False),
        "espeak": summarize(espeak, names, args.thresholds, args.min_speech_ms, speech=True),
        "ravdess": summarize(ravdess, names, args.thresholds, args.min_speech_ms,
                             speech=True) if ravdess else {},
        "cpu_ms_per_utterance": cost,
        "clips": {"nonspeech": nonspeech, "espeak": espeak, "ravdess": ravdess}}
    for key in ("nonspeech", "espeak", "ravdess"):
        summary = {k: v for k, v in result[key].items()
                   if k not in ("rejected", "clips_let_through_per_kind")}
        print(f"{key}: {json.dumps(summary)}", flush=True)
    print(f"CPU: {json.dumps(cost)}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
