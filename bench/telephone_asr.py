"""ASR on 8 kHz G.711 mu-law telephone audio: tiny.en against the packaged multilingual base.

Issue 11 row 3. The same utterances are transcribed wideband (16 kHz) and after a
telephone round trip, by each model through the streamer's own ``AsrEngine`` (the ``asr``
config's decoding: 10 s encoder window, greedy, word timestamps):

- telephone: 16 kHz -> 8 kHz (soxr HQ) -> G.711 mu-law bytes -> decoded with the streamer's
  codec (``offline_training.corpora.telephone.telephone_band``), then back to 16 kHz with
  the resampler a Twilio or 8 kHz raw-PCM party goes through (``streamer.audio.telephony``'s
  ``ChannelUpsampler``: soxr HQ, streamed);
- as the streamer publishes it: a final that loops (``speech_gate.looks_looped``) is decoded
  again in Whisper's 30 s window (``asr.redecode_loops``), and one the speech gate would
  abstain on is counted (its text is scored as it is: an abstention publishes no text
  worth scoring, so WER counts it as said);
- utterances with known text: RAVDESS clips (``--ravdess`` of them, spread over the 24
  actors and all emotions; two fixed sentences, the statement is in the file name), trimmed
  to their speech plus 0.2 s as the segmenter would give them, and the espeak-ng sentences
  of ``bench/asr_window.py`` (``--sentences`` of them, two voices each).

Per model and band it reports corpus WER (jiwer, on ``normalize_words``), the paired
difference telephone - wideband with a bootstrap 95% interval, and the real-time factor
(transcription seconds per audio second, p50/p95, on this CPU with ``asr.cpu_threads``)
and the process CPU seconds per audio second (less sensitive to other load on the machine).
It also records the resident memory each loaded model adds and the cost of the extra
encoder pass a base-transcribed channel needs for the emotion model's tiny.en frames.
Models and bands run back to back per utterance in a rotating order so that load from
other processes spreads evenly.

Usage (from the repository root)::

    .venv/bin/python bench/telephone_asr.py --out bench/results/telephone_asr.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.asr_window import (  # noqa: E402
    SENTENCES,
    VOICES,
    corpus_wer,
    machine_info,
    pct,
    trim_silence,
    wer,
    wer_diff_ci,
)
from harness.speech import Turn, synthesize  # noqa: E402
from models.asr import AsrEngine, Transcript  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from models.encoders.whisper import WhisperEncoder, load_whisper  # noqa: E402
from offline_training.corpora.telephone import telephone_band  # noqa: E402
from streamer.audio import speech_gate  # noqa: E402
from streamer.audio.audio_io import read_audio_file  # noqa: E402
from streamer.audio.telephony import TELEPHONY_RATE, ChannelUpsampler  # noqa: E402
from streamer.core.config import AsrConfig, GateConfig  # noqa: E402
from streamer.engine.policy import FULL_WINDOW_S  # noqa: E402

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
MODELS = ("packaged:tiny.en", "packaged:base")
BANDS = ("wideband", "telephone")


@dataclass(frozen=True)
class Clip:
    name: str
    corpus: str  # "ravdess" or "espeak"
    text: str
    wideband: np.ndarray  # 16 kHz float32
    telephone: np.ndarray  # 8 kHz G.711 round trip, upsampled as the streamer does


def to_telephone(audio: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz mu-law -> 16 kHz through the ingest's own upsampler."""
    narrow = telephone_band(audio)
    up = ChannelUpsampler("bench", "a", TELEPHONY_RATE, chunk_ms=100)
    chunks = up.push(narrow) + up.flush()
    return np.concatenate([c.samples for c in chunks]).astype(np.float32)


def trim_speech(audio: np.ndarray, level: float = 0.01, keep_s: float = 0.2) -> np.ndarray:
    """RAVDESS clips have about 1 s of room noise around the sentence: keep the speech and
    ``keep_s`` each side (pre-roll and hangover, as the segmenter cuts it)."""
    loud = np.flatnonzero(np.abs(audio) > level)
    if loud.size == 0:
        return audio
    keep = int(keep_s * SAMPLE_RATE)
    return audio[max(0, loud[0] - keep): loud[-1] + keep].copy()


def ravdess_clips(root: Path, n: int) -> list[Clip]:
    """``n`` speech clips spread evenly over the actors, each actor's picked at random."""
    rng = random.Random(0)
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    per_actor = -(-n // len(actors))
    picked: list[Path] = []
    for actor in actors:
        files = sorted(actor.glob("03-01-*.flac")) or sorted(actor.glob("03-01-*.wav"))
        picked += rng.sample(files, min(per_actor, len(files)))
    clips = []
    for path in sorted(picked[:n]):
        statement = path.stem.split("-")[4]
        audio = trim_speech(read_audio_file(path))
        clips.append(Clip(path.stem, "ravdess", RAVDESS_STATEMENTS[statement], audio,
                          to_telephone(audio)))
    return clips


def espeak_clips(n: int) -> list[Clip]:
    clips = []
    k = 0
    for i, text in enumerate(SENTENCES[:n]):
        for _ in range(2):
            voice, pitch, wpm = VOICES[k % len(VOICES)]
            k += 1
            audio = trim_silence(synthesize(Turn(text, voice, pitch, wpm)))
            clips.append(Clip(f"s{i:02d}_{voice}_{wpm}", "espeak", text, audio,
                              to_telephone(audio)))
    return clips


class Published:
    """One model as the streamer runs it: the configured window, loops decoded again in 30 s."""

    def __init__(self, whisper: Any, cfg: AsrConfig) -> None:
        self.cfg = cfg
        self.gate = GateConfig()
        self.short = AsrEngine(cfg.options(), whisper)
        self.full = AsrEngine(dataclasses.replace(cfg.options(), window_s=FULL_WINDOW_S),
                              whisper)
        self.model = whisper

    def transcribe(self, audio: np.ndarray) -> tuple[Transcript, str, bool]:
        """(published transcript, first pass text, re-decoded)."""
        first = self.short.transcribe(audio, final=True)
        if self.cfg.redecode_loops and len(audio) / SAMPLE_RATE < self.cfg.window_s \
                and speech_gate.looks_looped(first, self.gate, self.cfg.loop_repeats):
            return self.full.transcribe(audio, final=True), first.text, True
        return first, first.text, False


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/telephone_asr.json"))
    parser.add_argument("--ravdess-root", type=Path, default=RAVDESS)
    parser.add_argument("--ravdess", type=int, default=96, help="RAVDESS clips (0: none)")
    parser.add_argument("--sentences", type=int, default=24,
                        help="espeak-ng sentences of bench/asr_window.py, two voices each")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--beam-size", type=int, default=None,
                        help="decode with this beam instead of asr.beam_size")
    args = parser.parse_args()

    load0 = os.getloadavg()
    t_start = time.time()
    clips: list[Clip] = []
    if args.ravdess:
        if not args.ravdess_root.is_dir():
            raise SystemExit(f"RAVDESS not found at {args.ravdess_root}; pass --ravdess-root "
                             "DIR or --ravdess 0")
        clips += ravdess_clips(args.ravdess_root, args.ravdess)
    clips += espeak_clips(args.sentences)
    print(f"{len(clips)} utterances ({sum(c.corpus == 'ravdess' for c in clips)} RAVDESS)",
          flush=True)

    cfg = AsrConfig() if args.beam_size is None else AsrConfig(beam_size=args.beam_size)
    engines: dict[str, Published] = {}
    memory: dict[str, dict[str, float]] = {}
    for ref in args.models.split(","):
        before, t0 = rss_mb(), time.perf_counter()
        whisper = load_whisper(ref, compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads)
        engines[ref] = Published(whisper, cfg)
        engines[ref].transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))  # warm up
        memory[ref] = {"rss_added_mb": round(rss_mb() - before, 1),
                       "load_s": round(time.perf_counter() - t0, 2)}
    tiny_frames = WhisperEncoder(engines[MODELS[0]].model) if MODELS[0] in engines else None

    rows: list[dict[str, Any]] = []
    runs = [(m, b) for m in engines for b in BANDS]
    for i, clip in enumerate(clips):
        row: dict[str, Any] = {"name": clip.name, "corpus": clip.corpus, "text": clip.text,
                               "seconds": len(clip.wideband) / SAMPLE_RATE, "runs": {}}
        for k in range(len(runs)):
            model, band = runs[(i + k) % len(runs)]
            audio = getattr(clip, band)
            t0, c0 = time.perf_counter(), time.process_time()
            transcript, first, redecoded = engines[model].transcribe(audio)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            row["runs"][f"{model}|{band}"] = {
                "hyp": transcript.text, "wer": wer(clip.text, transcript.text),
                "first_pass": first, "redecoded": redecoded,
                "abstain": speech_gate.check_transcript(transcript, engines[model].gate),
                "seconds": elapsed, "rtf": elapsed / (len(audio) / SAMPLE_RATE),
                "cpu_per_audio_s": cpu / (len(audio) / SAMPLE_RATE)}
        if tiny_frames is not None:  # what a base-transcribed channel adds for emotion
            t0 = time.perf_counter()
            tiny_frames.encode(clip.telephone, cfg.window_s)
            row["tiny_frames_s"] = time.perf_counter() - t0
        rows.append(row)
        if (i + 1) % 16 == 0:  # a partial summary to look at while it runs
            print_table(summarise(rows, list(engines)))
        print(f"[{i + 1}/{len(clips)}] {clip.name} " + " ".join(
            f"{k.split(':')[1]}:{v['wer']:.2f}" for k, v in row["runs"].items()), flush=True)

    summary = summarise(rows, list(engines))
    result = {
        "benchmark": "telephone_asr",
        "telephone": "16 kHz -> 8 kHz soxr HQ -> G.711 mu-law (streamer.audio.telephony) -> 16 kHz "
                     "ChannelUpsampler",
        "asr_options": {"window_s": cfg.window_s, "redecode_loops": cfg.redecode_loops,
                        "beam_size": cfg.beam_size,
                        "compute_type": cfg.compute_type, "cpu_threads": cfg.cpu_threads,
                        "language": cfg.language, "word_timestamps": cfg.word_timestamps},
        "machine": machine_info(),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - t_start, 1),
        "memory": memory,
        "tiny_frames_p50_s": pct([r["tiny_frames_s"] for r in rows], 50)
        if tiny_frames is not None else None,
        "summary": summary,
        "clips": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    print_table(summary)


def summarise(rows: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for corpus in ("ravdess", "espeak", "all"):
        rs = [r for r in rows if corpus in ("all", r["corpus"])]
        if not rs:
            continue
        refs = [r["text"] for r in rs]
        out[corpus] = {}
        for model in models:
            hyps = {b: [r["runs"][f"{model}|{b}"]["hyp"] for r in rs] for b in BANDS}
            diff, lo, hi = wer_diff_ci(refs, hyps["telephone"], hyps["wideband"])
            entry: dict[str, Any] = {"n": len(rs), "telephone_minus_wideband": diff,
                                     "diff_ci95": [lo, hi]}
            for band in BANDS:
                rtf = [r["runs"][f"{model}|{band}"]["rtf"] for r in rs]
                secs = [r["runs"][f"{model}|{band}"]["seconds"] for r in rs]
                runs = [r["runs"][f"{model}|{band}"] for r in rs]
                entry[band] = {"wer": corpus_wer(refs, hyps[band]),
                               "wer_first_pass": corpus_wer(refs, [x["first_pass"]
                                                                   for x in runs]),
                               "redecoded": sum(x["redecoded"] for x in runs),
                               "abstained": sum(x["abstain"] is not None for x in runs),
                               "rtf_p50": pct(rtf, 50), "rtf_p95": pct(rtf, 95),
                               "cpu_per_audio_s_p50": pct([x["cpu_per_audio_s"] for x in runs],
                                                          50),
                               "seconds_p50": pct(secs, 50), "seconds_p95": pct(secs, 95)}
            out[corpus][model] = entry
        if len(models) == 2:  # base - tiny on telephone audio, paired
            a, b = models
            tel = {m: [r["runs"][f"{m}|telephone"]["hyp"] for r in rs] for m in models}
            diff, lo, hi = wer_diff_ci(refs, tel[b], tel[a])
            out[corpus]["telephone_second_minus_first"] = {"diff": diff, "ci95": [lo, hi]}
    return out


def print_table(summary: dict[str, Any]) -> None:
    for corpus, table in summary.items():
        print(f"\n{corpus}")
        print(f"{'model':18s} {'n':>3s} {'WER wb':>7s} {'WER tel':>7s} {'diff':>6s} "
              f"{'95% CI':>15s} {'RTF wb':>7s} {'RTF tel':>7s} {'redec':>5s} {'abst':>4s}")
        for model, s in table.items():
            if "n" not in s:
                continue
            lo, hi = s["diff_ci95"]
            print(f"{model:18s} {s['n']:3d} {s['wideband']['wer']:7.3f} "
                  f"{s['telephone']['wer']:7.3f} {s['telephone_minus_wideband']:+6.3f} "
                  f"[{lo:+.3f},{hi:+.3f}] {s['wideband']['rtf_p50']:7.3f} "
                  f"{s['telephone']['rtf_p50']:7.3f} "
                  f"{s['wideband']['redecoded']:2d}/{s['telephone']['redecoded']:<2d} "
                  f"{s['wideband']['abstained']:2d}/{s['telephone']['abstained']:<2d}")
        if "telephone_second_minus_first" in table:
            d = table["telephone_second_minus_first"]
            print(f"telephone WER, second - first model: {d['diff']:+.3f} "
                  f"[{d['ci95'][0]:+.3f},{d['ci95'][1]:+.3f}]")


if __name__ == "__main__":
    main()
