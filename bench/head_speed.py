"""Parameter count and CPU inference time per utterance of every fusion head.

Typical shapes of the default stack: a 3 s utterance = 150 Whisper tiny.en
frames of 384-d, 12 MiniLM tokens of 384-d (7 hidden layers incl.
embeddings), 8 words, 4 past utterances of context, 100 prosody functionals.
Heads use their default (paper) settings with those widths. Time is the
median of repeated forward passes under ``torch.inference_mode`` on one CPU
thread, at batch 1 and per utterance at batch 16; encoders are not included
(see the encoder rows at the end).

Usage (from the repository root)::

    .venv/bin/python bench/head_speed.py [--repeats 30] [--threads 1] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from models.encoders.prosody import FUNCTIONALS_DIM, ProsodyEncoder, functionals
from models.heads import HEADS, HeadItem, build_head, collate, head_spec, make_config
from models.heads.base import FusionHead

AUDIO_FRAMES, AUDIO_DIM = 150, 384
TOKENS, TEXT_DIM, TEXT_LAYERS = 12, 384, 7
WORDS, CONTEXT = 8, 4
NUM_CLASSES = 4


def head_settings(name: str) -> dict[str, object]:
    """Widths of the default stack; everything else stays at the head's defaults."""
    settings: dict[str, object] = {"audio_dim": AUDIO_DIM, "text_dim": TEXT_DIM,
                                   "num_classes": NUM_CLASSES}
    head_cls = head_spec(name).head_cls
    if head_cls.needs_functionals:
        settings["functionals_dim"] = FUNCTIONALS_DIM
    if head_cls.needs_context:
        settings["audio_layers"] = 1  # Whisper (CTranslate2) gives its last layer only
        settings["text_layers"] = TEXT_LAYERS
    return settings


def utterance(head_cls: type[FusionHead], seed: int) -> HeadItem:
    gen = torch.Generator().manual_seed(seed)
    text_layers = torch.randn(TEXT_LAYERS, TOKENS, TEXT_DIM, generator=gen)
    edges = torch.linspace(0, AUDIO_FRAMES, WORDS + 1).long()
    return HeadItem(
        audio=torch.randn(AUDIO_FRAMES, AUDIO_DIM, generator=gen),
        text=text_layers[-1],
        text_layers=text_layers if head_cls.needs_text_layers else None,
        word_text=torch.randn(WORDS, TEXT_DIM, generator=gen) if head_cls.needs_words else None,
        word_spans=torch.stack([edges[:-1], edges[1:]], 1) if head_cls.needs_words else None,
        context_audio=(torch.randn(CONTEXT, AUDIO_DIM, generator=gen)
                       if head_cls.needs_context else None),
        context_text=(torch.randn(CONTEXT, TEXT_DIM, generator=gen)
                      if head_cls.needs_context else None),
        functionals=(torch.randn(FUNCTIONALS_DIM, generator=gen)
                     if head_cls.needs_functionals else None),
    )


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(name: str, repeats: int) -> tuple[int, float, float]:
    torch.manual_seed(0)
    head = build_head(name, make_config(name, **head_settings(name))).eval()
    params = sum(p.numel() for p in head.parameters())
    head_cls = type(head)
    one = collate([utterance(head_cls, 0)])
    sixteen = collate([utterance(head_cls, i) for i in range(16)])
    with torch.inference_mode():
        ms_one = median_ms(lambda: head(one), repeats)
        ms_sixteen = median_ms(lambda: head(sixteen), max(5, repeats // 3)) / 16
    return params, ms_one, ms_sixteen


def encoder_rows(repeats: int) -> list[tuple[str, float]]:
    from models.encoders.text import TextEncoder

    rows = []
    audio = (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)
    prosody = ProsodyEncoder()
    rows.append(("prosody frames, 3 s", median_ms(lambda: prosody.frames(audio), repeats)))
    rows.append(("prosody functionals, 3 s",
                 median_ms(lambda: functionals(audio, prosody), repeats)))
    text = TextEncoder.load("packaged:all-MiniLM-L6-v2")
    sentence = ["I really did not expect to see you here today"]
    rows.append(("MiniLM-L6 text encoder, 12 tokens",
                 median_ms(lambda: text.encode(sentence), repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.markdown:
        print("| head | parameters | ms / utt, batch 1 | ms / utt, batch 16 |")
        print("|---|---:|---:|---:|")
    else:
        print(f"{'head':<16}{'parameters':>12}{'ms/utt b=1':>12}{'ms/utt b=16':>13}")
    for name in HEADS:
        params, ms_one, ms_sixteen = measure(name, args.repeats)
        if args.markdown:
            print(f"| `{name}` | {params:,} | {ms_one:.2f} | {ms_sixteen:.2f} |")
        else:
            print(f"{name:<16}{params:>12,}{ms_one:>12.2f}{ms_sixteen:>13.2f}")
    print()
    for label, ms in encoder_rows(args.repeats):
        print(f"{label}: {ms:.2f} ms" if not args.markdown else f"- {label}: {ms:.2f} ms")


if __name__ == "__main__":
    main()
