"""Errors raised by the offline trainer; each says what was wrong and what to do."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class for offline-training errors."""


class CorpusError(TrainingError):
    """A corpus directory or manifest is missing files or does not have the expected layout."""


class LabelError(CorpusError):
    """A label is unknown, or a label map does not cover the labels found in the data."""


class ToolError(TrainingError):
    """An external tool (espeak-ng, sox, ffmpeg) is missing or failed."""


class FeatureCacheError(TrainingError):
    """The feature cache is missing entries or was written with other settings."""


class ProtocolError(TrainingError):
    """An evaluation protocol cannot be applied to this corpus (e.g. too few sessions)."""
