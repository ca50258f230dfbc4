"""Optional redaction of digit runs (card, account, phone numbers) in transcripts.

With ``bus.redact_digit_runs`` = N, every run of at least N digits in a transcript
(single spaces, dots or dashes between digits count as one run, e.g. "4111 1111 1111
1111", "555-0100") has each digit replaced by ``#`` before the event reaches any
publisher, so no copy leaves the process. The replacement keeps the length, so the
words of ``utterance.emotion`` are redacted exactly where their text is. Numbers the ASR
writes out in words ("four one one one") are not caught.
"""

from __future__ import annotations

import re
from typing import Any

from streamer.core.events import Event

DIGIT_RUN = re.compile(r"\d(?:[ .\-]?\d)*")
MASK = "#"


def redact_digits(text: str, min_digits: int) -> str:
    """``text`` with the digits of every run of at least ``min_digits`` digits masked."""

    def mask(match: re.Match[str]) -> str:
        run = match.group(0)
        if sum(c.isdigit() for c in run) < min_digits:
            return run
        return "".join(MASK if c.isdigit() else c for c in run)

    return DIGIT_RUN.sub(mask, text)


def redact_event(event: Event, min_digits: int) -> Event:
    """A copy of a transcript event with its digit runs masked (other events as they are)."""
    kind = event.get("type")
    if kind == "utterance.partial":
        return {**event, **{key: redact_digits(event[key], min_digits)
                            for key in ("text", "stable_text") if isinstance(event.get(key), str)}}
    if kind != "utterance.emotion" or not isinstance(event.get("text"), str):
        return event
    out = {**event, "text": redact_digits(event["text"], min_digits)}
    words = event.get("words")
    if isinstance(words, list) and all(isinstance(w, dict) and isinstance(w.get("word"), str)
                                       for w in words):
        # Mask across word boundaries ("4111" "1111" ...): redact the joined words, then
        # cut them back at the same lengths (masking keeps the length).
        joined = redact_digits("".join(w["word"] for w in words), min_digits)
        masked: list[dict[str, Any]] = []
        at = 0
        for w in words:
            n = len(w["word"])
            masked.append({**w, "word": joined[at:at + n]})
            at += n
        out["words"] = masked
    return out
