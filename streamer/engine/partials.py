"""Partial transcripts: the sans-I/O LocalAgreement policy.

A word prefix is committed once two successive hypotheses of the same
utterance agree; a commitment is never withdrawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.asr import normalize_words


@dataclass(frozen=True)
class PartialUpdate:
    text: str  # the latest full hypothesis
    stable_text: str  # committed prefix: agreed by two successive hypotheses


class PartialCommitter:
    """LocalAgreement-2 over successive partial hypotheses of one utterance."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._committed: list[str] = []

    def push(self, hypothesis: str) -> PartialUpdate:
        words = hypothesis.split()
        agreed = 0
        for a, b in zip(self._previous, words, strict=False):
            if normalize_words(a) != normalize_words(b):
                break
            agreed += 1
        # A commitment is never withdrawn: only extend it.
        if agreed > len(self._committed):
            self._committed = words[:agreed]
        self._previous = words
        return PartialUpdate(text=hypothesis, stable_text=" ".join(self._committed))

    def reset(self) -> None:
        self._previous = []
        self._committed = []
