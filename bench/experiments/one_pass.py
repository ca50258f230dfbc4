"""One Whisper encoder pass per final utterance, shared by the ASR and the emotion model
(issue 31): CPU cost, WER and label agreement against today's two passes.

Settings (all measured in one run, CPU time of the process, ratios to ``today``):

- ``today``: CTranslate2 tiny.en int8 ``AsrEngine.transcribe`` (10 s window, word times)
  + the default bundle's PyTorch Whisper base all-layer pass on the ``fit`` window.
- ``onepass_fit``: the PyTorch base pass on the fit window; its hidden states go to the
  emotion head exactly as today, its last (final-layer-norm'd) state, over the whole padded
  window, goes to CTranslate2's base decoder (int8) as the encoder output.
- ``onepass_10s``: the same pass on the 10 s window (the ASR's window); the emotion head then
  sees 10 s-window frames.
- ``onepass_fitpad``: the fit pass, with the decoder's input padded to 10 s by the encoder
  output of a padding-only window (``SharedPass.silence_tail``); emotion frames as ``fit``.

Components are timed on their own too (tiny.en's whole transcribe vs the base decoder alone,
the PyTorch pass per window). Quality: WER on real RAVDESS speech (held-out actors of the
default bundle, two known sentences) and on the synthetic espeak-ng set of
docs/performance-asr.md (clean copies), and agreement of the default bundle's labels between
each candidate and today on the same clips (``EmotionModel.predict``, ``observe=False``, no
context). A few nEMO (Polish) clips show what the multilingual decoder does with the
``asr.language: en`` default and with detection, and whether the text gate keeps the text.

    .venv/bin/python -m bench.experiments.one_pass --threads 2 --repeats 5

Writes ``bench/results/one_pass.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.asr_window import SENTENCES as ASR_SENTENCES
from bench.asr_window import VOICES, trim_silence
from harness.speech import Turn, synthesize
from models.asr import AsrEngine, AsrOptions, Transcript, normalize_words
from models.audio import SAMPLE_RATE
from models.encoders import AudioFeatures
from models.encoders.whisper import (
    DEFAULT_WINDOW_S,
    WhisperEncoding,
    _padded,
    load_whisper,
    n_output_frames,
)
from models.encoders.whisper_torch import LayerEncoding, WhisperTorchEncoder
from models.inference import EmotionInput, EmotionModel

BUNDLE = Path("models/default_bundle")
RAVDESS = Path("../shared/corpora/ravdess")
NEMO = Path("../shared/corpora/nemo")
CLIP = RAVDESS / "Actor_01" / "03-01-05-01-01-01-01.flac"  # as bench/encoder_pass.py
OUT = Path("bench/results/one_pass.json")
CANDIDATES = ("today", "onepass_fit", "onepass_10s", "onepass_fitpad")
RAVDESS_TEXT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
RAVDESS_4CLASS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
NEMO_4CLASS = {"neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry"}

SENTENCES = ASR_SENTENCES[:30]  # bench/asr_window.py's first 30 (short to long)


# --- the shared pass --------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedEncoding:
    """One PyTorch Whisper pass: what the decoder and the emotion head each take from it."""

    asr: WhisperEncoding  # features (unpadded mel), storage (1, W/2, D) for the CT2 decoder
    layers: LayerEncoding  # (L + 1, T, D) of the utterance's own frames, as encode_batch gives

    def audio_features(self) -> AudioFeatures:
        """What ``EmotionModel.encode_audio`` returns for the same pass."""
        return AudioFeatures(frames=torch.from_numpy(self.layers.last.copy()),
                             layers=torch.from_numpy(self.layers.hidden_states))


class SharedPass:
    """The PyTorch all-layer Whisper pass whose last state also feeds CTranslate2's decoder."""

    def __init__(self, encoder: WhisperTorchEncoder) -> None:
        self.encoder = encoder
        self._tail: np.ndarray | None = None

    @torch.inference_mode()
    def silence_tail(self) -> np.ndarray:
        """(1, DEFAULT_WINDOW_S * 50, D): the last state of a window of padding only (computed
        once), whose frames stand in for the padded part of a 10 s window."""
        if self._tail is None:
            width = int(round(DEFAULT_WINDOW_S * 100))
            mel = torch.zeros(1, self.encoder.config.n_mels, width)
            self._tail = self.encoder.module(mel)[-1].float().numpy()
        return self._tail

    @torch.inference_mode()
    def run(self, audio: np.ndarray, window_s: float | None,
            pad_tail: bool = False) -> SharedEncoding:
        """``pad_tail``: the decoder gets the window's frames followed by ``silence_tail``'s
        up to DEFAULT_WINDOW_S (the emotion frames are unchanged)."""
        import ctranslate2

        features = self.encoder.feature_extractor(audio)  # (n_mels, n + 1), as faster-whisper
        mel = torch.from_numpy(_padded(features, window_s))  # (1, n_mels, W)
        states = self.encoder.module(mel).float().numpy()  # (L + 1, 1, W / 2, D)
        frames = n_output_frames(len(audio))
        # The decoder attends to the whole padded window (as CT2's own encode gives it):
        # the last state is the final layer norm's output, (1, W / 2, D), C-contiguous.
        last = np.ascontiguousarray(states[-1])
        tail = self.silence_tail()
        if pad_tail and last.shape[1] < tail.shape[1]:
            last = np.ascontiguousarray(np.concatenate([last, tail[:, last.shape[1]:]], axis=1))
        storage = ctranslate2.StorageView.from_array(last)  # shares memory with ``last``
        return SharedEncoding(
            asr=WhisperEncoding(features=features, storage=storage, frames=last[0, :frames]),
            layers=LayerEncoding(np.ascontiguousarray(states[:, 0, :frames])))


class GivenEncoder:
    """Stands in for ``AsrEngine.encoder``: hands the decoder an encoding computed elsewhere."""

    def __init__(self) -> None:
        self.encoding: WhisperEncoding | None = None

    def encode(self, audio: np.ndarray, window_s: float = DEFAULT_WINDOW_S) -> WhisperEncoding:
        if self.encoding is None:
            raise RuntimeError("GivenEncoder: set .encoding before transcribe()")
        return self.encoding


class OnePass:
    """ASR (CT2 base decoder) + emotion features from one PyTorch pass."""

    def __init__(self, shared: SharedPass, base_model: Any, language: str | None = "en"
                 ) -> None:
        self.shared = shared
        self.engine = AsrEngine(AsrOptions(language=language), base_model)
        self.given = GivenEncoder()
        self.engine.encoder = self.given  # type: ignore[assignment]

    def decode(self, audio: np.ndarray, encoding: SharedEncoding) -> Transcript:
        self.given.encoding = encoding.asr
        try:
            return self.engine.transcribe(audio, final=True)
        finally:
            self.given.encoding = None

    def __call__(self, audio: np.ndarray, window_s: float | None, pad_tail: bool = False
                 ) -> tuple[Transcript, AudioFeatures]:
        encoding = self.shared.run(audio, window_s, pad_tail)
        return self.decode(audio, encoding), encoding.audio_features()


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    name: str
    corpus: str
    text: str
    emotion: str | None  # 4-class truth where the corpus has it
    audio: np.ndarray


def read_audio(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


def ravdess_clips(actors: list[str], per_actor: int) -> list[Clip]:
    """Audio-only speech clips of the 4 classes the bundle knows, ``per_actor`` per actor
    (evenly spaced over the sorted list; 0 = all)."""
    clips: list[Clip] = []
    for actor in actors:
        files = sorted(p for p in (RAVDESS / f"Actor_{actor}").glob("*.flac")
                       if p.name.split("-")[0] == "03" and p.name.split("-")[2] in RAVDESS_4CLASS)
        if per_actor and per_actor < len(files):
            files = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_actor)]
        for p in files:
            parts = p.stem.split("-")
            clips.append(Clip(p.stem, "ravdess", RAVDESS_TEXT[parts[4]],
                              RAVDESS_4CLASS[parts[2]], read_audio(p)))
    return clips


def synthetic_clips(n_sentences: int) -> list[Clip]:
    clips: list[Clip] = []
    k = 0
    for i, text in enumerate(SENTENCES[:n_sentences]):
        for _ in range(2):
            voice, pitch, wpm = VOICES[k % len(VOICES)]
            k += 1
            clips.append(Clip(f"s{i:02d}_{voice}_{wpm}", "synthetic", text, None,
                              trim_silence(synthesize(Turn(text, voice, pitch, wpm)))))
    return clips


def nemo_clips(n: int) -> list[Clip]:
    rows = [line.rstrip("\n").split("\t") for line in
            (NEMO / "data.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rows = sorted((r for r in rows if r[1] in NEMO_4CLASS), key=lambda r: r[0])
    picked = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, n)] if n else []
    return [Clip(r[0], "nemo", r[2], NEMO_4CLASS[r[1]], read_audio(NEMO / "samples" / r[0]))
            for r in picked]


def tiled(seconds: float, clip: Path) -> np.ndarray:
    """As bench/encoder_pass.py: one real clip joined to itself, cut to ``seconds``."""
    audio = read_audio(clip)
    return np.tile(audio, int(np.ceil(seconds * SAMPLE_RATE / len(audio))))[
        : int(seconds * SAMPLE_RATE)]


# --- metrics ----------------------------------------------------------------------------------


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    import jiwer

    r = " ".join(normalize_words(ref))
    o = jiwer.process_words(r, " ".join(normalize_words(hyp)) or "<empty>")
    return o.substitutions + o.deletions + o.insertions, len(r.split())


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    errors = [word_errors(r, h) for r, h in zip(refs, hyps, strict=True)]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    out = fn()
    return out, (time.process_time() - start) * 1000


# --- main -------------------------------------------------------------------------------------


class Bench:
    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.tiny_model = load_whisper("packaged:tiny.en", cpu_threads=threads)
        self.base_model = load_whisper("packaged:base", cpu_threads=threads)
        self.tiny = AsrEngine(AsrOptions(), self.tiny_model)  # the streamer's defaults
        self.emotion = EmotionModel.load(BUNDLE)
        torch_encoder = self.emotion._audio_encoder  # the bundle's own base copy: one in memory
        assert isinstance(torch_encoder, WhisperTorchEncoder)
        self.shared = SharedPass(torch_encoder)
        self.onepass = OnePass(self.shared, self.base_model, language="en")
        self.ct2_base = AsrEngine(AsrOptions(), self.base_model)  # base, CT2's own encoder
        self.detect = OnePass(self.shared, self.base_model, language=None)

    # today's two passes
    def today(self, audio: np.ndarray) -> tuple[Transcript, AudioFeatures]:
        return self.tiny.transcribe(audio, final=True), self.emotion.encode_audio([audio])[0]

    def label(self, audio: np.ndarray, transcript: Transcript, feats: AudioFeatures
              ) -> tuple[str, np.ndarray, bool]:
        inp = EmotionInput(audio=audio, text=transcript.text, words=transcript.words,
                           language=transcript.language, audio_features=feats)
        pred = self.emotion.predict([inp], observe=False)[0]
        return pred.label, pred.probabilities, "text" in pred.modalities

    def checks(self, audio: np.ndarray) -> dict[str, Any]:
        """The PyTorch last state vs CT2's encoder output on the same padded mel, and the
        shared pass's emotion features vs the bundle's own encode_audio (must be equal)."""
        out: dict[str, Any] = {}
        ref = self.emotion.encode_audio([audio])[0]
        mine = self.shared.run(audio, None).audio_features()
        assert ref.layers is not None and mine.layers is not None
        out["fit_features_max_abs_diff_vs_encode_audio"] = float(
            (ref.layers - mine.layers).abs().max())
        base_fx = self.base_model.feature_extractor(audio)
        out["mel_max_abs_diff_torch_vs_ct2_extractor"] = float(
            np.abs(base_fx - self.shared.encoder.feature_extractor(audio)).max())
        f32 = load_whisper("packaged:base", compute_type="float32",
                           cpu_threads=torch.get_num_threads())
        for name, window in (("fit", None), ("10s", DEFAULT_WINDOW_S)):
            shared = self.shared.run(audio, window)
            torch_last = np.asarray(shared.asr.storage, dtype=np.float32)[0]
            ct2_last = np.asarray(self.base_model.encode(_padded(base_fx, window)),
                                  dtype=np.float32)[0]
            cos = float(np.sum(torch_last * ct2_last) / (np.linalg.norm(torch_last)
                                                          * np.linalg.norm(ct2_last)))
            out[f"{name}_window"] = {
                "shape_torch": list(torch_last.shape), "shape_ct2": list(ct2_last.shape),
                "max_abs_diff": float(np.abs(torch_last - ct2_last).max()),
                "mean_abs_ct2": float(np.abs(ct2_last).mean()),
                "cosine": cos,
            }
            f32_last = np.asarray(f32.encode(_padded(base_fx, window)), dtype=np.float32)[0]
            out[f"{name}_window"]["vs_ct2_float32"] = {
                "max_abs_diff": float(np.abs(torch_last - f32_last).max()),
                "cosine": float(np.sum(torch_last * f32_last) / (np.linalg.norm(torch_last)
                                                                 * np.linalg.norm(f32_last)))}
            # What the decoder would get without the final layer norm (the wrong state).
            layers_full = self._pre_norm_cosine(audio, window, ct2_last)
            out[f"{name}_window"]["cosine_if_pre_norm_state"] = layers_full
        return out

    @torch.inference_mode()
    def _pre_norm_cosine(self, audio: np.ndarray, window: float | None,
                         ct2_last: np.ndarray) -> float:
        module = self.shared.encoder.module
        mel = torch.from_numpy(_padded(self.shared.encoder.feature_extractor(audio), window))
        x = torch.nn.functional.gelu(module.conv2(torch.nn.functional.gelu(module.conv1(mel))))
        x = x.transpose(1, 2)
        x = x + module.positions[: x.shape[1]]
        for layer in module.layers:
            x = layer(x)
        pre = x[0].numpy()
        return float(np.sum(pre * ct2_last) / (np.linalg.norm(pre) * np.linalg.norm(ct2_last)))


def timing(bench: Bench, lengths: list[float], repeats: int, clip: Path
           ) -> dict[str, dict[str, float]]:
    """Median CPU ms per setting and utterance length; settings rotate within each repeat."""
    out: dict[str, dict[str, float]] = {}
    for seconds in lengths:
        audio = tiled(seconds, clip)
        enc_fit = bench.shared.run(audio, None)
        enc_10 = bench.shared.run(audio, DEFAULT_WINDOW_S)
        enc_fitpad = bench.shared.run(audio, None, pad_tail=True)
        onepass, shared, tiny = bench.onepass, bench.shared, bench.tiny
        settings: dict[str, Callable[[], Any]] = {
            "today": partial(bench.today, audio),
            "onepass_fit": partial(onepass, audio, None),
            "onepass_10s": partial(onepass, audio, DEFAULT_WINDOW_S),
            "onepass_fitpad": partial(onepass, audio, None, True),
            "tiny_transcribe": partial(tiny.transcribe, audio, final=True),
            "torch_base_pass_fit": partial(bench.emotion.encode_audio, [audio]),
            "torch_base_pass_10s": partial(shared.run, audio, DEFAULT_WINDOW_S),
            "base_decode_fit": partial(onepass.decode, audio, enc_fit),
            "base_decode_10s": partial(onepass.decode, audio, enc_10),
            "base_decode_fitpad": partial(onepass.decode, audio, enc_fitpad),
            "ct2_base_transcribe_10s": partial(bench.ct2_base.transcribe, audio, final=True),
        }
        names = list(settings)
        for fn in settings.values():
            fn()  # warm
        runs: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                runs[name].append(timed(settings[name])[1])
        out[f"{seconds:g}"] = {n: statistics.median(v) for n, v in runs.items()}
        texts = {"tiny": bench.tiny.transcribe(audio).text,
                 "onepass_fit": bench.onepass.decode(audio, enc_fit).text,
                 "onepass_10s": bench.onepass.decode(audio, enc_10).text,
                 "onepass_fitpad": bench.onepass.decode(audio, enc_fitpad).text}
        print(f"{seconds:g} s: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                             out[f'{seconds:g}'].items()), flush=True)
        print(f"   texts: {texts}", flush=True)
    return out


def quality(bench: Bench, clips: list[Clip]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, clip in enumerate(clips):
        a = clip.audio
        (t_today, f_fit), ms_today = timed(partial(bench.today, a))
        (t_fit, f_fit_shared), ms_fit = timed(partial(bench.onepass, a, None))
        (t_10, f_10), ms_10 = timed(partial(bench.onepass, a, DEFAULT_WINDOW_S))
        (t_fp, f_fp), ms_fp = timed(partial(bench.onepass, a, None, True))
        t_ct2 = bench.ct2_base.transcribe(a, final=True)
        row: dict[str, Any] = {
            "name": clip.name, "corpus": clip.corpus, "seconds": len(a) / SAMPLE_RATE,
            "ref": clip.text, "truth": clip.emotion,
            "text": {"today": t_today.text, "onepass_fit": t_fit.text,
                     "onepass_10s": t_10.text, "onepass_fitpad": t_fp.text,
                     "ct2_base_10s": t_ct2.text},
            "cpu_ms": {"today": ms_today, "onepass_fit": ms_fit, "onepass_10s": ms_10,
                       "onepass_fitpad": ms_fp},
            "max_abs_diff_fit_features": float((f_fit.layers - f_fit_shared.layers).abs().max())
            if f_fit.layers is not None and f_fit_shared.layers is not None else None,
        }
        labels: dict[str, Any] = {}
        for name, tr, feats in (("today", t_today, f_fit), ("onepass_fit", t_fit, f_fit_shared),
                                ("onepass_10s", t_10, f_10), ("onepass_fitpad", t_fp, f_fp),
                                ("10s_audio_tiny_text", t_today, f_10),
                                ("fit_audio_base_text", t_fit, f_fit),
                                ("fit_audio_base10_text", t_10, f_fit)):
            label, probs, used_text = bench.label(a, tr, feats)
            labels[name] = {"label": label, "probs": [round(float(p), 4) for p in probs],
                            "text_used": used_text}
        row["labels"] = labels
        if clip.corpus == "nemo":
            detected, _ = bench.detect(a, None)
            row["text"]["onepass_fit_detect"] = detected.text
            row["detected_language"] = detected.language
            label, probs, used_text = bench.label(a, detected, f_fit_shared)
            row["labels"]["onepass_fit_detect"] = {
                "label": label, "probs": [round(float(p), 4) for p in probs],
                "text_used": used_text}
        rows.append(row)
        print(f"[{i + 1}/{len(clips)}] {clip.corpus} {clip.name} {row['seconds']:.1f}s "
              f"{ms_today:.0f}/{ms_fit:.0f}/{ms_10:.0f} ms | {t_today.text!r} | {t_fit.text!r} | "
              f"{t_10.text!r} | " + " ".join(v["label"] for v in labels.values()), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        sub = [r for r in rows if r["corpus"] == corpus]
        s: dict[str, Any] = {"n": len(sub)}
        if corpus != "nemo":
            s["wer"] = {k: corpus_wer([r["ref"] for r in sub], [r["text"][k] for r in sub])
                        for k in ("today", "onepass_fit", "onepass_10s", "onepass_fitpad",
                                  "ct2_base_10s")}
        names = list(sub[0]["labels"])
        s["label_agreement_with_today"] = {
            k: float(np.mean([r["labels"][k]["label"] == r["labels"]["today"]["label"]
                              for r in sub])) for k in names if k != "today"}
        s["text_used"] = {k: float(np.mean([bool(r["labels"][k]["text_used"]) for r in sub]))
                          for k in names}
        truth = [r for r in sub if r["truth"]]
        if truth:
            s["accuracy"] = {k: float(np.mean([r["labels"][k]["label"] == r["truth"]
                                               for r in truth])) for k in names}
        s["median_cpu_ms"] = {k: statistics.median(r["cpu_ms"][k] for r in sub)
                              for k in CANDIDATES}
        s["median_ratio_to_today"] = {
            k: statistics.median(r["cpu_ms"][k] / r["cpu_ms"]["today"] for r in sub)
            for k in CANDIDATES[1:]}
        s["max_abs_diff_fit_features"] = max(r["max_abs_diff_fit_features"] or 0.0 for r in sub)
        out[corpus] = s
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", default="1.5,2.5,4,8", help="timed utterance lengths")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--actors", default="01,11,20,21", help="RAVDESS actors (held out)")
    parser.add_argument("--per-actor", type=int, default=10, help="RAVDESS clips per actor")
    parser.add_argument("--synthetic", type=int, default=30,
                        help="synthetic sentences (x2 voices, clean); 0 skips")
    parser.add_argument("--nemo", type=int, default=8, help="nEMO clips; 0 skips")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    bench = Bench(args.threads)
    result: dict[str, Any] = {
        "command": "python -m bench.experiments.one_pass " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("skip_timing", "out", "clip")) + (" --skip-timing"
                                                           if args.skip_timing else ""),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": args.threads, "load_before": load_before},
    }
    check_audio = tiled(2.5, args.clip)
    result["checks"] = bench.checks(check_audio)
    print("checks:", json.dumps(result["checks"], indent=1), flush=True)
    if not args.skip_timing:
        result["timing_ms"] = timing(bench, [float(s) for s in args.seconds.split(",")],
                                     args.repeats, args.clip)
    clips = ravdess_clips(args.actors.split(","), args.per_actor)
    if args.synthetic:
        clips += synthetic_clips(args.synthetic)
    if args.nemo:
        clips += nemo_clips(args.nemo)
    rows = quality(bench, clips)
    result["summary"] = summarise(rows)
    result["rows"] = rows
    result["machine"]["load_after"] = os.getloadavg()[0]
    print(json.dumps(result["summary"], indent=1))
    if "timing_ms" in result:
        print("\nCPU ms per utterance (median; ratio to today)")
        names = list(next(iter(result["timing_ms"].values())))
        print("| setting | " + " | ".join(f"{s} s" for s in result["timing_ms"]) + " |")
        for n in names:
            cells = [f"{t[n]:.0f} ({t[n] / t['today']:.2f}x)" for t in result["timing_ms"].values()]
            print(f"| {n} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
