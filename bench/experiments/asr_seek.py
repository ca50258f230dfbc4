"""faster-whisper's second decoding window on served utterances: how often, what it costs,
what it buys (tiny.en, CTranslate2 int8, CPU).

``AsrEngine.transcribe`` encodes an utterance once (10 s window, 30 s when longer) and hands
that encoder output to ``WhisperModel.generate_segments``. Its seek loop decodes another
window whenever the first one does not end on a lone timestamp token: with word timestamps
it seeks to the last word's end, re-encodes the rest of the utterance padded to 30 s and
decodes it. This script counts the encoder calls per transcribe and compares, per
utterance, back to back in alternating order:

- ``a``: ``AsrOptions(first_window_only=False)``: faster-whisper's seek loop as it is
  (what the engine did before the option);
- ``b``: ``first_window_only=True``: the first window's segments only.

Finals (word timestamps) and partials (``final=False``, no word timestamps) of each whole
utterance are timed, and partials of its prefixes every ``partial_interval_s`` (the audio
the streamer's partial passes get while the speaker talks).

Utterances are the spans the streamer serves: RAVDESS held-out spans
(runs/ravdess-heldout-spans.jsonl, cut by the served segmenter), nEMO clips and the
bundled samples cut by ``streamer.audio.segmenter.Segmenter`` (``SegmenterConfig()``), and
espeak-ng sentences cut the same way. WER is per source item (the hypotheses of its
utterances joined) against the known text; nEMO is Polish, so for cost only.

Usage (from the repository root)::

    .venv/bin/python -m bench.experiments.asr_seek --out bench/results/asr_seek.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness.speech import SAMPLE_TURNS, Turn, conversation, synthesize  # noqa: E402
from models.asr import AsrEngine, AsrOptions, Transcript, normalize_words  # noqa: E402
from models.audio import SAMPLE_RATE  # noqa: E402
from models.encoders.whisper import load_whisper  # noqa: E402
from streamer.audio.audio_io import read_audio_file  # noqa: E402
from streamer.audio.segmenter import Segmenter  # noqa: E402
from streamer.audio.speech_gate import check_transcript  # noqa: E402
from streamer.core.config import GateConfig, SegmenterConfig  # noqa: E402
from streamer.core.messages import Utterance as Cut  # noqa: E402

RAVDESS_TEXT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
SYNTHETIC = (
    Turn("Yes."),
    Turn("Thank you so much.", "en-us+f2", 60, 170),
    Turn("I would like to cancel my subscription, please.", "en-gb+m3", 45, 160),
    Turn("The package was supposed to arrive on Monday, but it never came.", "en-us+f3"),
    Turn("Could you please tell me why my account was closed without any warning at all?",
         "en-gb-x-rp+m2", 50, 175),
    Turn("I have been waiting on the phone for almost an hour and nobody has been able to "
         "help me with a simple question about my bill.", "en-us+m3", 55, 180),
    Turn("We went to the beach last summer and the weather was perfect every single day, so "
         "we stayed a whole week longer than we had planned, and the children loved it.",
         "en-us+f2", 50, 170),
    Turn("When I finally reached the front of the line the clerk told me that the office "
         "was closing early today because of the storm and that I would have to come back "
         "tomorrow morning with all of my documents again.", "en-us+m3", 50, 150),
    Turn("Good afternoon, my name is Sarah and I am calling about the invoice you sent "
         "me last Tuesday.", "en-us+f4", 60, 160),
    Turn("I really appreciate everything you have done for us this year, it has made a huge "
         "difference to the whole team.", "en-gb+f2", 55, 170),
    Turn("If the train is late again tomorrow morning I am going to miss the most important "
         "meeting of the quarter and my manager will not be pleased about it at all.",
         "en-us-nyc+m5", 45, 175),
    Turn("She opened the letter slowly, read it twice, and then sat down at the kitchen table "
         "without saying a single word to anyone for the rest of the evening.",
         "en-gb-x-rp+f3", 50, 150),
    Turn("Please make sure that the doors are locked and the lights are switched off before "
         "you leave the building tonight.", "en-029+f1", 50, 165),
    Turn("We tried three different restaurants in the old town and every one of them was "
         "full, so in the end we bought sandwiches and ate them in the park by the river.",
         "en-us+m2", 40, 185),
    Turn("I am not angry, I am just disappointed that nobody told me about the change in "
         "the schedule until the very last minute.", "en-us+m4", 65, 170),
    Turn("Honestly I do not understand how this keeps happening, because I called last "
         "month and the month before that, and every time someone promised me that the "
         "problem had been fixed for good.", "en-029+m1", 45, 190),
)


@dataclass
class Item:
    """A source item with one known text (or none), cut into served utterances."""

    source: str
    name: str
    reference: str | None
    utterances: list[np.ndarray] = field(default_factory=list)


def cut(audio: np.ndarray) -> list[Cut]:
    segmenter = Segmenter(SegmenterConfig())
    return [e for e in segmenter.push(audio) + segmenter.flush() if isinstance(e, Cut)]


def ravdess_items(path: Path, limit: int | None) -> list[Item]:
    items = []
    for line in path.read_text().splitlines()[:limit]:
        row = json.loads(line)
        audio = read_audio_file(row["path"])
        piece = audio[int(row["start"] * SAMPLE_RATE): int(row["end"] * SAMPLE_RATE)]
        items.append(Item("ravdess_spans", row["id"], row["text"], [piece]))
    return items


def nemo_items(folder: Path, n: int) -> list[Item]:
    files = sorted((folder / "samples").glob("*.opus"))
    step = max(1, len(files) // n)
    items = []
    for f in files[::step][:n]:
        items.append(Item("nemo", f.name, None, [c.audio for c in cut(read_audio_file(f))]))
    return items


def _by_overlap(cuts: list[Cut], spans: list[tuple[float, float, str]]) -> list[Item]:
    """Group cut utterances under the known span they overlap most."""
    items = [Item("", name, text) for _, _, (name, text) in
             [(s, e, (f"{i}:{t[:24]}", t)) for i, (s, e, t) in enumerate(spans)]]
    for c in cuts:
        end = c.t_start + len(c.audio) / SAMPLE_RATE
        overlaps = [max(0.0, min(end, e) - max(c.t_start, s)) for s, e, _ in spans]
        items[int(np.argmax(overlaps))].utterances.append(c.audio)
    return [i for i in items if i.utterances]


def sample_items() -> list[Item]:
    assets = ROOT / "streamer" / "assets"
    meta = json.loads((assets / "sample_ravdess.json").read_text())
    spans = [(m["t_start"], m["t_end"], RAVDESS_TEXT[m["file"].split("-")[4]]) for m in meta]
    ravdess = _by_overlap(cut(read_audio_file(assets / "sample_ravdess.flac")), spans)
    for it in ravdess:
        it.source = "sample_ravdess"
    # sample_conversation.wav is harness.speech.conversation(SAMPLE_TURNS): turn times from
    # the synthesised turns' lengths.
    t, spans = 0.5, []
    for turn in SAMPLE_TURNS:
        n = len(synthesize(turn)) / SAMPLE_RATE
        spans.append((t, t + n, turn.text))
        t += n + 1.2
    conv = _by_overlap(cut(read_audio_file(assets / "sample_conversation.wav")), spans)
    for it in conv:
        it.source = "sample_conversation"
    return ravdess + conv


def synthetic_items() -> list[Item]:
    items = []
    for turn in SYNTHETIC:
        audio = conversation([turn], gap_s=0.0, lead_s=0.6)
        items.append(Item("synthetic", turn.text[:24], turn.text, [c.audio for c in cut(audio)]))
    return items


def make_engine(model: Any, first_window_only: bool) -> AsrEngine:
    return AsrEngine(AsrOptions(first_window_only=first_window_only), model)


class EncodeCounter:
    def __init__(self, model: Any) -> None:
        self.widths: list[int] = []
        real = model.encode

        def counting(features: np.ndarray) -> Any:
            self.widths.append(int(np.shape(features)[-1]))
            return real(features)

        model.encode = counting

    def run(self, fn: Callable[[], Transcript]) -> tuple[Transcript, list[int], float]:
        self.widths = []
        t0 = time.process_time()
        out = fn()
        ms = (time.process_time() - t0) * 1000.0
        return out, list(self.widths), ms


def windows(engine: AsrEngine, audio: np.ndarray) -> list[dict[str, Any]]:
    """Every segment ``transcribe`` decodes (untimed, before its own filter), with its
    window's seek: what the second window decoded."""
    encoding = engine.encoder.encode(audio, engine.config.window_s)
    return [{"seek_s": s.seek / 100, "start": s.start, "end": s.end, "text": s.text,
             "tokens": len(s.tokens), "no_speech": s.no_speech_prob, "logprob": s.avg_logprob}
            for s in engine.model.generate_segments(encoding.features, engine.tokenizer,
                                                    engine._options(True), False,
                                                    encoding.storage)]


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def bucket(seconds: float) -> str:
    for top in (2, 4, 6, 8, 10, 15):
        if seconds <= top:
            return f"<={top}s"
    return ">15s"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "asr_seek.json")
    ap.add_argument("--ravdess", type=Path, default=ROOT / "runs" / "ravdess-heldout-spans.jsonl")
    ap.add_argument("--ravdess-limit", type=int, default=None)
    ap.add_argument("--nemo", type=Path, default=ROOT.parent / "shared" / "corpora" / "nemo")
    ap.add_argument("--nemo-n", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    items = (ravdess_items(args.ravdess, args.ravdess_limit) + nemo_items(args.nemo, args.nemo_n)
             + sample_items() + synthetic_items())
    model = load_whisper("packaged:tiny.en", cpu_threads=args.threads)
    counter = EncodeCounter(model)
    a, b = make_engine(model, False), make_engine(model, True)
    gate = GateConfig()
    for warm in range(2):
        a.transcribe(items[warm].utterances[0])
        b.transcribe(items[warm].utterances[0])

    rows: list[dict[str, Any]] = []
    for n_item, item in enumerate(items):
        hyp_a, hyp_b = [], []
        for k, audio in enumerate(item.utterances):
            order = [("a", a), ("b", b)] if (n_item + k) % 2 == 0 else [("b", b), ("a", a)]
            got: dict[str, tuple[Transcript, list[int], float]] = {}
            for name, engine in order:
                got[name] = counter.run(lambda e=engine, x=audio: e.transcribe(x))  # type: ignore[misc]
            for name, eng in order:
                got["p" + name] = counter.run(
                    lambda e=eng, x=audio: e.transcribe(x, final=False))  # type: ignore[misc]
            (ta, wa, ma), (tb, wb, mb) = got["a"], got["b"]
            (pa, pwa, pma), (pb, pwb, pmb) = got["pa"], got["pb"]
            hyp_a.append(ta.text)
            hyp_b.append(tb.text)
            rows.append({
                "source": item.source, "item": item.name, "seconds": len(audio) / SAMPLE_RATE,
                "encodes_a": wa, "encodes_b": wb, "ms_a": ma, "ms_b": mb,
                "text_a": ta.text, "text_b": tb.text,
                "no_speech_a": ta.no_speech_prob, "no_speech_b": tb.no_speech_prob,
                "logprob_a": ta.avg_logprob, "logprob_b": tb.avg_logprob,
                "gate_a": check_transcript(ta, gate), "gate_b": check_transcript(tb, gate),
                "words_a": len(ta.words), "words_b": len(tb.words),
                "partial_encodes_a": pwa, "partial_encodes_b": pwb,
                "partial_ms_a": pma, "partial_ms_b": pmb,
                "partial_text_a": pa.text, "partial_text_b": pb.text,
                "partial_gate_a": check_transcript(pa, gate),
                "partial_gate_b": check_transcript(pb, gate),
            })
            if len(wa) > 1:
                rows[-1]["segments_a"] = windows(a, audio)
            # the streamer's partials: the utterance so far, every partial_interval_s
            prefixes = []
            step = SegmenterConfig().partial_interval_s
            for j, t in enumerate(np.arange(step, len(audio) / SAMPLE_RATE, step)):
                head = audio[: int(t * SAMPLE_RATE)]
                pair = [("a", a), ("b", b)] if j % 2 == 0 else [("b", b), ("a", a)]
                got = {n: counter.run(lambda e=eng, x=head: e.transcribe(x, final=False))  # type: ignore[misc]
                       for n, eng in pair}
                prefixes.append({"seconds": float(t), "encodes_a": got["a"][1],
                                 "encodes_b": got["b"][1], "ms_a": got["a"][2],
                                 "ms_b": got["b"][2], "text_a": got["a"][0].text,
                                 "text_b": got["b"][0].text})
            rows[-1]["prefixes"] = prefixes
        if item.reference is not None and item.source != "nemo":
            ref = normalize_words(item.reference)
            rows[-1]["wer_item"] = {
                "ref_words": len(ref),
                "edits_a": edits(ref, normalize_words(" ".join(hyp_a))),
                "edits_b": edits(ref, normalize_words(" ".join(hyp_b))),
            }
        print(f"{n_item + 1}/{len(items)} {item.source} {item.name}: "
              f"{[len(r['encodes_a']) for r in rows[-len(item.utterances):]]}", flush=True)

    def summary(sel: list[dict[str, Any]]) -> dict[str, Any]:
        wer = [r["wer_item"] for r in sel if "wer_item" in r]
        refs = sum(w["ref_words"] for w in wer)
        return {
            "utterances": len(sel),
            "second_window_a": sum(len(r["encodes_a"]) > 1 for r in sel),
            "second_window_b": sum(len(r["encodes_b"]) > 1 for r in sel),
            "ms_a_median": pct([r["ms_a"] for r in sel], 50),
            "ms_a_p90": pct([r["ms_a"] for r in sel], 90),
            "ms_b_median": pct([r["ms_b"] for r in sel], 50),
            "ms_b_p90": pct([r["ms_b"] for r in sel], 90),
            "ratio_b_a_median": pct([r["ms_b"] / r["ms_a"] for r in sel], 50),
            "wer_items": len(wer),
            "wer_a": sum(w["edits_a"] for w in wer) / refs if refs else None,
            "wer_b": sum(w["edits_b"] for w in wer) / refs if refs else None,
            "text_differs": sum(r["text_a"] != r["text_b"] for r in sel),
            "gate_differs": sum(r["gate_a"] != r["gate_b"] for r in sel),
            "ms_a_mean": float(np.mean([r["ms_a"] for r in sel])),
            "ms_b_mean": float(np.mean([r["ms_b"] for r in sel])),
            "partial_second_window_a": sum(len(r["partial_encodes_a"]) > 1 for r in sel),
            "partial_second_window_b": sum(len(r["partial_encodes_b"]) > 1 for r in sel),
            "partial_ms_a_median": pct([r["partial_ms_a"] for r in sel], 50),
            "partial_ms_b_median": pct([r["partial_ms_b"] for r in sel], 50),
            "partial_ms_a_mean": float(np.mean([r["partial_ms_a"] for r in sel])),
            "partial_ms_b_mean": float(np.mean([r["partial_ms_b"] for r in sel])),
            "partial_text_differs": sum(r["partial_text_a"] != r["partial_text_b"] for r in sel),
            "partial_gate_differs": sum(r["partial_gate_a"] != r["partial_gate_b"] for r in sel),
            **prefix_summary([p for r in sel for p in r["prefixes"]]),
        }

    def prefix_summary(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "prefixes": len(sel),
            "prefix_second_window_a": sum(len(p["encodes_a"]) > 1 for p in sel),
            "prefix_second_window_b": sum(len(p["encodes_b"]) > 1 for p in sel),
            "prefix_ms_a_mean": float(np.mean([p["ms_a"] for p in sel])) if sel else None,
            "prefix_ms_b_mean": float(np.mean([p["ms_b"] for p in sel])) if sel else None,
            "prefix_text_differs": sum(p["text_a"] != p["text_b"] for p in sel),
        }

    sources = sorted({r["source"] for r in rows})
    buckets = sorted({bucket(r["seconds"]) for r in rows}, key=lambda s: (s[0] == ">",
                     float(s.strip("<=>s"))))
    result = {
        "command": "bench/asr_seek.py " + " ".join(sys.argv[1:]),
        "host": platform.node(),
        "threads": args.threads,
        "all": summary(rows),
        "by_source": {s: summary([r for r in rows if r["source"] == s]) for s in sources},
        "by_length": {k: summary([r for r in rows if bucket(r["seconds"]) == k])
                      for k in buckets},
        "differences": [{k: r.get(k) for k in ("source", "item", "seconds", "text_a", "text_b",
                                              "gate_a", "gate_b", "no_speech_a",
                                              "no_speech_b", "segments_a")}
                        for r in rows if r["text_a"] != r["text_b"] or r["gate_a"] != r["gate_b"]],
        "second_windows": [{k: r.get(k) for k in ("source", "item", "seconds", "text_a",
                                                  "text_b", "segments_a")}
                           for r in rows if len(r["encodes_a"]) > 1],
        "prefix_differences": [{"item": r["item"], **p} for r in rows for p in r["prefixes"]
                               if p["text_a"] != p["text_b"] or len(p["encodes_a"]) > 1],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result[k] for k in ("all", "by_source", "by_length")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
