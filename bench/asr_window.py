"""Whisper encoder window length against word error rate and time (tiny.en, CPU).

``AsrEngine`` (models/asr.py) encodes every utterance in Whisper's fixed 30 s
window. For a 3 s utterance most of that work encodes padding. This benchmark
measures, on a fixed set of synthetic (espeak-ng) utterances with known text,
clean and telephone-band (8 kHz mu-law round trip), what shorter windows cost
in word error rate and save in time:

- ``w30``: the 30 s window, exactly what ``AsrEngine.transcribe`` does;
- ``bucket``: mel features padded to the smallest of 5 s, 10 s, 15 s that holds
  the utterance (instead of 3000 frames);
- ``pad10`` / ``pad15``: every utterance padded to 10 s / 15 s;
- ``unpadded``: the utterance's own mel frames only;
- ``w30_f32`` / ``w30_t1``: the 30 s window with compute_type float32, or with
  cpu_threads=1 (the default is int8 on 2 threads).

All variants decode with ``AsrEngine``'s options (final pass: greedy, word
timestamps, max_new_tokens from the config) through faster-whisper's
``generate_segments``, from the variant's encoder output. Per utterance the
variants run back to back in a rotating order, so that load from other
processes spreads evenly; times are also reported as per-utterance ratios to
``w30``. The cosine similarity of the mean-pooled utterance frames (the
emotion features) against ``w30`` is recorded too.

Usage (from the repository root)::

    .venv/bin/python bench/asr_window.py --out bench/results/asr_window.json \\
        --plot docs/img/asr_window.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.speech import Turn, synthesize  # noqa: E402
from models.asr import AsrEngine, normalize_words  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from models.encoders.whisper import WINDOW_FRAMES, load_whisper, n_output_frames  # noqa: E402
from offline_training.metrics import word_error_rate as wer  # noqa: E402
from streamer.core.config import AsrConfig  # noqa: E402

FRAMES_PER_SECOND = 100  # mel frames
BUCKETS_S = (5, 10, 15)
VARIANT_ORDER = ["w30", "bucket", "pad10", "pad15", "unpadded", "w30_f32", "w30_t1"]

# Everyday sentences, words only (no digits or abbreviations, so that the
# reference needs no text normalisation beyond lower-casing and punctuation).
SENTENCES = (
    "Yes, please.",
    "No, thank you.",
    "Good morning.",
    "Can you hear me now?",
    "I will call you back later.",
    "Where did you park the car?",
    "The meeting has been moved to Friday.",
    "Please send me the invoice by email.",
    "It is raining again, so take an umbrella.",
    "My internet connection keeps dropping every evening.",
    "We ran out of milk, could you buy some on the way home?",
    "I would like to change the delivery address on my order.",
    "The train was late and I missed the first half of the film.",
    "Thank you for waiting, I have found your account details.",
    "She told me the new restaurant on the corner is very good.",
    "Could you please explain why my bill is higher this month?",
    "I have already restarted the router twice and nothing has changed.",
    "The children are playing in the garden while the soup is cooking.",
    "If you press the green button, the machine will start again.",
    "I am really happy with the service, everyone was very friendly.",
    "Let me transfer you to a colleague who can help with that question.",
    "We should leave early tomorrow because the roads will be busy.",
    "I cannot find my keys anywhere, have you seen them on the table?",
    "The doctor said I need to rest for a few days and drink more water.",
    "He forgot to lock the door when he left the office last night.",
    "Your package will arrive on Monday between nine and twelve in the morning.",
    "I am sorry, but I do not understand what you are asking me to do.",
    "This is the third time I have called about the same problem this week.",
    "The weather forecast says it will be sunny and warm for the whole weekend.",
    "Could you speak a little louder, the line is very bad and I can barely hear you.",
    "We are planning a small party for my grandmother, and everyone from the family "
    "is coming.",
    "I paid the full amount last month, so I do not understand why you are charging "
    "me again.",
    "The new phone works well, but the battery does not last as long as the old one.",
    "Please remember to water the plants and feed the cat while we are away on holiday.",
    "I have been waiting on hold for a long time and nobody has answered my question yet.",
    "After the storm, the power was out for most of the night, and the whole street was "
    "dark.",
    "Let me check the system and then I will tell you exactly when the technician can "
    "come.",
    "My brother moved to a small town near the sea, and he says he will never go back to "
    "the city.",
    "I would like to cancel my subscription, because I no longer use the service and it "
    "is too expensive.",
    "When you get to the station, walk past the bakery, turn left at the church, and my "
    "house is the blue one.",
    "I called the bank this morning to ask about the missing payment, and they told me it "
    "would take another three working days before the money shows up in my account.",
    "We spent the whole afternoon at the lake with the dog, and when we came back the "
    "kitchen was full of smoke because someone had left the oven on.",
    "Before you sign anything, please read the contract carefully, ask your lawyer about "
    "the cancellation terms, and keep a copy of every letter they send you.",
    "The engineer replaced the broken part, but the heating still makes a strange noise at "
    "night, and now the hot water takes almost an hour to come back.",
    "My daughter starts at a new school next week, she is nervous about making friends, so "
    "we are going to visit the classroom together on Sunday afternoon.",
    "I understand that you are busy, but I have explained this problem to four different "
    "people already, and I would really like someone to take responsibility for it today.",
)

# (voice, pitch, words per minute): two renderings per sentence, cycled.
VOICES = (
    ("en-us+m3", 50, 165),
    ("en-us+f2", 60, 175),
    ("en-gb+m7", 40, 150),
    ("en-gb-x-rp+f4", 55, 185),
    ("en-029+m1", 45, 160),
    ("en-us-nyc+f3", 65, 170),
)


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    channel: str  # "clean" or "telephone"
    audio: np.ndarray  # 16 kHz mono float32


def mulaw_roundtrip(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    """16 kHz -> 8 kHz -> 8-bit mu-law (G.711 curve) -> decode -> 16 kHz."""
    x = soxr.resample(audio, SAMPLE_RATE, 8000)
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1.0) / 2.0 * mu)  # 256 levels
    y = q / mu * 2.0 - 1.0
    x = np.sign(y) * ((1.0 + mu) ** np.abs(y) - 1.0) / mu
    return soxr.resample(x.astype(np.float32), 8000, SAMPLE_RATE).astype(np.float32)


def build_clips(limit: int | None) -> list[Clip]:
    """The fixed utterance set: each sentence in two voices, clean and telephone."""
    clips: list[Clip] = []
    k = 0
    sentences = SENTENCES[:limit] if limit else SENTENCES
    for i, text in enumerate(sentences):
        for _ in range(2):
            voice, pitch, wpm = VOICES[k % len(VOICES)]
            k += 1
            audio = synthesize(Turn(text, voice, pitch, wpm))
            audio = trim_silence(audio)
            name = f"s{i:02d}_{voice}_{wpm}"
            clips.append(Clip(name, text, "clean", audio))
            clips.append(Clip(name, text, "telephone", mulaw_roundtrip(audio)))
    return clips


def trim_silence(audio: np.ndarray, threshold: float = 1e-3, keep_s: float = 0.1) -> np.ndarray:
    """Cut espeak's leading/trailing silence, keeping ``keep_s`` on each side (like a VAD)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    keep = int(keep_s * SAMPLE_RATE)
    return audio[max(0, loud[0] - keep): loud[-1] + keep].copy()


class Runner:
    """Encode and decode one utterance with a chosen mel window, as AsrEngine does."""

    def __init__(self, model: Any, config: AsrConfig) -> None:
        self.model = model
        self.engine = AsrEngine(config.options(), model)
        self.encode_calls = 0

    def features(self, audio: np.ndarray) -> np.ndarray:
        return self.model.feature_extractor(audio)  # (n_mels, n_frames + 1)

    @staticmethod
    def window(features: np.ndarray, target: int | None) -> np.ndarray:
        """Mel frames padded with zeros (as pad_or_trim does) to ``target``; None = unpadded."""
        content = features[:, : min(features.shape[1] - 1, WINDOW_FRAMES)]
        if target is None:
            return content
        pad = max(0, target - content.shape[1])
        return np.pad(content, ((0, 0), (0, pad)))[:, :target]

    def encode(self, window: np.ndarray) -> Any:
        return self.model.encode(window)

    def transcribe(self, audio: np.ndarray, target: int | None) -> tuple[str, np.ndarray, int]:
        """Text, utterance frames and the number of encoder passes (decoder may re-encode)."""
        features = self.features(audio)
        storage = self.encode(self.window(features, target))
        frames = np.asarray(storage, dtype=np.float32)[0, : n_output_frames(len(audio))]
        calls: list[int] = [1]
        original = self.model.encode

        def counting(x: np.ndarray) -> Any:
            calls[0] += 1
            return original(x)

        self.model.encode = counting  # generate_segments re-encodes (30 s) when it seeks on
        try:
            segments = self.model.generate_segments(
                features, self.engine.tokenizer, self.engine._options(True), False, storage)
            text = " ".join(s.text.strip() for s in segments if s.text.strip())
        finally:
            del self.model.encode  # restore the class method
        return text, frames, calls[0]


def bucket_frames(n_samples: int) -> int:
    seconds = n_samples / SAMPLE_RATE
    for b in BUCKETS_S:
        if seconds <= b:
            return b * FRAMES_PER_SECOND
    return WINDOW_FRAMES


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words)."""
    import jiwer

    r = " ".join(normalize_words(ref))
    o = jiwer.process_words(r, " ".join(normalize_words(hyp)) or "<empty>")
    return o.substitutions + o.deletions + o.insertions, len(r.split())


def wer_diff_ci(refs: list[str], hyps: list[str], base: list[str],
                n_boot: int = 2000) -> tuple[float, float, float]:
    """Corpus WER(hyps) - WER(base), with a paired bootstrap 95% interval over utterances."""
    e = np.array([word_errors(r, h)[0] for r, h in zip(refs, hyps, strict=True)], float)
    e0 = np.array([word_errors(r, b)[0] for r, b in zip(refs, base, strict=True)], float)
    n = np.array([word_errors(r, r)[1] for r in refs], float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(refs), size=(n_boot, len(refs)))
    diffs = (e[idx].sum(1) - e0[idx].sum(1)) / n[idx].sum(1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float((e.sum() - e0.sum()) / n.sum()), float(lo), float(hi)


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    """Total word errors / total reference words (what jiwer does over a list)."""
    import jiwer

    r = [" ".join(normalize_words(x)) for x in refs]
    h = [" ".join(normalize_words(x)) or "<empty>" for x in hyps]
    return float(jiwer.wer(r, h))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.mean(axis=0), b.mean(axis=0)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Variants: w30, bucket, pad10, pad15, unpadded, "
                                            "w30_f32, w30_t1.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/asr_window.json"))
    parser.add_argument("--plot", type=Path, default=None, help="write a WER-vs-time PNG here")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="recompute the summary (and plot) of an earlier run's JSON; no timing")
    parser.add_argument("--no-extra", action="store_true",
                        help="skip the float32 and 1-thread variants")
    parser.add_argument("--extra-channels", default="clean",
                        help="channels on which float32/1-thread run: clean, telephone or both")
    args = parser.parse_args()

    if args.from_json:
        result = json.loads(args.from_json.read_text())
        names = sorted(result["clips"][0]["variants"], key=VARIANT_ORDER.index)
        result["summary"] = summarise(result["clips"], names)
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print_table(result["summary"])
        if args.plot:
            plot(result["summary"], args.plot)
        return

    load0 = os.getloadavg()
    t_start = time.time()
    clips = build_clips(args.limit)
    durations = [len(c.audio) / SAMPLE_RATE for c in clips]
    print(f"{len(clips)} clips, {min(durations):.2f}-{max(durations):.2f} s", flush=True)

    cfg = AsrConfig()
    runners = {
        "int8_t2": Runner(load_whisper(cfg.model, compute_type="int8", cpu_threads=2), cfg),
    }
    if not args.no_extra:
        runners["f32_t2"] = Runner(load_whisper(cfg.model, compute_type="float32",
                                                cpu_threads=2), cfg)
        runners["int8_t1"] = Runner(load_whisper(cfg.model, compute_type="int8",
                                                 cpu_threads=1), cfg)
    main_runner = runners["int8_t2"]

    # variant -> (runner key, target frames function)
    variants: dict[str, tuple[str, Any]] = {
        "w30": ("int8_t2", lambda n: WINDOW_FRAMES),
        "bucket": ("int8_t2", bucket_frames),
        "pad10": ("int8_t2", lambda n: 1000),
        "pad15": ("int8_t2", lambda n: 1500),
        "unpadded": ("int8_t2", lambda n: None),
    }
    if not args.no_extra:
        variants["w30_f32"] = ("f32_t2", lambda n: WINDOW_FRAMES)
        variants["w30_t1"] = ("int8_t1", lambda n: WINDOW_FRAMES)
    extra_channels = {"clean", "telephone"} if args.extra_channels == "both" else {
        args.extra_channels}

    # Warm up every runner and check that w30 reproduces AsrEngine.transcribe.
    warm = clips[0].audio
    for r in runners.values():
        for target in (WINDOW_FRAMES, 500, None):
            r.transcribe(warm, target)
    reference = main_runner.engine.transcribe(warm, final=True).text
    assert main_runner.transcribe(warm, WINDOW_FRAMES)[0] == reference, "w30 != AsrEngine"

    rows: list[dict[str, Any]] = []
    names = list(variants)
    for i, clip in enumerate(clips):
        n = len(clip.audio)
        order = names[i % len(names):] + names[: i % len(names)]
        row: dict[str, Any] = {"name": clip.name, "channel": clip.channel, "text": clip.text,
                               "duration_s": round(n / SAMPLE_RATE, 3), "variants": {}}
        frames_w30: np.ndarray | None = None
        results: dict[str, dict[str, Any]] = {}
        for v in order:
            key, target_fn = variants[v]
            if key != "int8_t2" and clip.channel not in extra_channels:
                continue
            runner = runners[key]
            target = target_fn(n)
            # encoder only (features computed outside the timed region)
            window = runner.window(runner.features(clip.audio), target)
            t0 = time.perf_counter()
            runner.encode(window)
            t_enc = time.perf_counter() - t0
            # full transcription: features + encode + decode, as AsrEngine.transcribe
            t0 = time.perf_counter()
            text, frames, passes = runner.transcribe(clip.audio, target)
            t_total = time.perf_counter() - t0
            results[v] = {"window_frames": target if target is not None else window.shape[1],
                          "encode_s": t_enc, "total_s": t_total, "encoder_passes": passes,
                          "hyp": text, "wer": wer(clip.text, text), "_frames": frames}
        frames_w30 = results["w30"]["_frames"]
        for v, res in results.items():
            res["cosine_vs_w30"] = cosine(res.pop("_frames"), frames_w30)
            row["variants"][v] = res
        rows.append(row)
        w = {v: f"{r['wer']:.2f}" for v, r in results.items()}
        print(f"[{i + 1}/{len(clips)}] {clip.channel:9s} {n / SAMPLE_RATE:4.1f}s "
              f"w30 {results['w30']['total_s']:.2f}s wer {w}", flush=True)

    summary = summarise(rows, names)
    result = {
        "benchmark": "asr_window",
        "model": "packaged:tiny.en (faster-whisper CTranslate2)",
        "decode_options": {"beam_size": cfg.beam_size, "max_new_tokens": cfg.max_new_tokens,
                           "word_timestamps": True, "temperatures": [0.0]},
        "machine": machine_info(),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - t_start, 1),
        "n_clips": len(clips),
        "buckets_s": list(BUCKETS_S),
        "summary": summary,
        "clips": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    print_table(summary)
    if args.plot:
        plot(summary, args.plot)
        print(f"wrote {args.plot}")


def summarise(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel in ("clean", "telephone", "all"):
        chan_rows = [r for r in rows if channel in ("all", r["channel"])]
        out[channel] = {}
        for v in names:
            rs = [r for r in chan_rows if v in r["variants"]]
            if not rs:
                continue
            res = [r["variants"][v] for r in rs]
            base = [r["variants"]["w30"] for r in rs]
            total = [x["total_s"] for x in res]
            enc = [x["encode_s"] for x in res]
            ratio = [x["total_s"] / b["total_s"] for x, b in zip(res, base, strict=True)]
            enc_ratio = [x["encode_s"] / b["encode_s"] for x, b in zip(res, base, strict=True)]
            diff, lo, hi = wer_diff_ci([r["text"] for r in rs], [x["hyp"] for x in res],
                                       [b["hyp"] for b in base])
            out[channel][v] = {
                "n": len(rs),
                "wer_diff_vs_w30": diff, "wer_diff_ci95": [lo, hi],
                "wer": corpus_wer([r["text"] for r in rs], [x["hyp"] for x in res]),
                "wer_w30_same_clips": corpus_wer([r["text"] for r in rs],
                                                 [b["hyp"] for b in base]),
                "mean_utt_wer": float(np.mean([x["wer"] for x in res])),
                "n_worse_than_w30": int(sum(x["wer"] > b["wer"] + 1e-9
                                            for x, b in zip(res, base, strict=True))),
                "n_utt_wer_over_1": int(sum(x["wer"] > 1.0 for x in res)),
                "total_p50_s": pct(total, 50), "total_p95_s": pct(total, 95),
                "encode_p50_s": pct(enc, 50), "encode_p95_s": pct(enc, 95),
                "time_ratio_p50": pct(ratio, 50), "time_ratio_of_p50s":
                    pct(total, 50) / pct([b["total_s"] for b in base], 50),
                "encode_ratio_p50": pct(enc_ratio, 50),
                "cosine_p50": pct([x["cosine_vs_w30"] for x in res], 50),
                "cosine_min": float(min(x["cosine_vs_w30"] for x in res)),
                "extra_encoder_passes": int(sum(x["encoder_passes"] - 1 for x in res)),
            }
    return out


def print_table(summary: dict[str, Any]) -> None:
    for channel, table in summary.items():
        print(f"\n{channel}")
        print(f"{'variant':9s} {'n':>3s} {'WER':>6s} {'dWER':>6s} {'p50 s':>6s} {'p95 s':>6s} "
              f"{'ratio':>6s} "
              f"{'enc p50':>7s} {'enc ratio':>9s} {'cos p50':>7s} {'cos min':>7s}")
        for v, s in table.items():
            print(f"{v:9s} {s['n']:3d} {s['wer']:6.3f} {s['wer_diff_vs_w30']:+6.3f} "
                  f"{s['total_p50_s']:6.3f} "
                  f"{s['total_p95_s']:6.3f} {s['time_ratio_p50']:6.2f} {s['encode_p50_s']:7.3f} "
                  f"{s['encode_ratio_p50']:9.3f} {s['cosine_p50']:7.4f} {s['cosine_min']:7.4f}")


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = [c for c in ("clean", "telephone") if c in summary]
    fig, axes = plt.subplots(1, len(channels), figsize=(10, 4.2), sharey=True, squeeze=False)
    colors = dict(zip(VARIANT_ORDER, plt.get_cmap("tab10").colors, strict=False))
    for ax, channel in zip(axes[0], channels, strict=True):
        for v, s in summary[channel].items():
            tail = s["total_p95_s"] - s["total_p50_s"]
            ax.errorbar(s["total_p50_s"], s["wer"], xerr=[[0], [tail]], fmt="o",
                        color=colors[v], capsize=3, label=v)
        ax.set_yscale("log")
        ax.set_xlabel("time per utterance, s (dot: median, bar: to p95)")
        ax.set_title(f"{channel} ({next(iter(summary[channel].values()))['n']} utterances)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("word error rate (log scale)")
    axes[0][0].legend(fontsize=8, loc="center right")
    fig.suptitle("tiny.en int8 on a 2-core CPU: encoder window vs WER (synthetic espeak-ng speech)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import ctranslate2
    import faster_whisper

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "ctranslate2": ctranslate2.__version__, "faster_whisper": faster_whisper.__version__}


if __name__ == "__main__":
    main()
