"""Feature statistics of a deployment: the audio features standardised by where they come from.

A model trained on one corpus learns its microphones, rooms and language as much as its
emotions: features of another corpus sit off-centre, and a linear head reads the offset as a
class (RAVDESS-only v5 called most calm Polish speech angry). Standardising each corpus by its
own statistics removes that offset, and is what the model is trained on
(``offline_training.cross_corpus``). Serving has no corpus, so it keeps running statistics of
the deployment instead: all streams of a service, one set per input kind (wideband,
telephone), starting from the training population (the mean corpus) and moving towards what
the service hears, with an exponentially weighted window so that it keeps following it.

This is deliberately not per speaker: a caller who is angry for a whole call would be
normalised into neutral (measured in docs/transfer.md). A deployment's statistics average
thousands of utterances of many callers, so no one caller moves them much.

Sans-I/O: ``DeploymentStats`` is plain arrays; ``to_bytes``/``load_bytes`` let the caller
persist it (``streamer.engine.adaptation`` writes it to a file and reads it back at start).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from models.errors import ModelError

BANDS = ("wideband", "telephone")  # input kinds, by the audio's native sample rate
TELEPHONE_MAX_RATE = 8000  # Hz: a source at this rate or below is telephone band
STD_FLOOR = 1e-3  # smallest standard deviation a feature is divided by
FORMAT = 1


def std_of(var: np.ndarray) -> np.ndarray:
    """The standard deviation features are divided by: sqrt(var), at least ``STD_FLOOR``."""
    return np.sqrt(np.maximum(var, STD_FLOOR ** 2))


def band_of(sample_rate: int | None) -> str:
    """The input kind of audio that arrived at ``sample_rate`` (None: wideband)."""
    return "telephone" if sample_rate is not None and sample_rate <= TELEPHONE_MAX_RATE \
        else "wideband"


@dataclass(frozen=True)
class AdaptationSettings:
    """How fast the deployment statistics move away from the training population."""

    prior_weight: float = 40.0  # the training population counts as this many utterances
    window: float = 5000.0  # effective memory in utterances (older ones fade out)
    follow: bool = True  # False: the training population's statistics, never updated

    def __post_init__(self) -> None:
        if self.prior_weight < 1 or self.window < self.prior_weight:
            raise ModelError(f"adaptation: need 1 <= prior_weight <= window, got prior_weight="
                             f"{self.prior_weight}, window={self.window}")


class RunningStats:
    """Mean and variance of feature vectors, exponentially weighted once ``window`` is full.

    Each update is Welford's step with weight 1 / count; the count grows by one per
    observation up to ``window``, after which every new observation weighs 1 / window.
    """

    def __init__(self, mean: np.ndarray, var: np.ndarray, count: float, window: float) -> None:
        if mean.shape != var.shape or mean.ndim != 1:
            raise ModelError(f"running stats: mean {mean.shape} and var {var.shape} must be "
                             "equal 1-D shapes")
        self.mean = mean.astype(np.float64)
        self.var = var.astype(np.float64)
        self.count = float(count)
        self.window = float(window)
        self.observed = 0  # observations since the prior (or since loaded)

    def update(self, rows: np.ndarray) -> None:
        for row in np.atleast_2d(rows).astype(np.float64):
            self.count = min(self.count + 1.0, self.window)
            weight = 1.0 / self.count
            delta = row - self.mean
            self.mean += weight * delta
            self.var = (1.0 - weight) * (self.var + weight * delta * delta)
            self.observed += 1

    @property
    def std(self) -> np.ndarray:
        return std_of(self.var)

    def standardise(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) / self.std


class DeploymentStats:
    """One ``RunningStats`` per input kind, started from the training population."""

    def __init__(self, prior_mean: np.ndarray, prior_var: np.ndarray,
                 settings: AdaptationSettings | None = None) -> None:
        """``prior_mean``/``prior_var``: (len(BANDS), F), the training population per band."""
        if prior_mean.shape != prior_var.shape or prior_mean.shape[0] != len(BANDS):
            raise ModelError(f"deployment stats: prior shapes {prior_mean.shape} and "
                             f"{prior_var.shape} must both be ({len(BANDS)}, F)")
        self.settings = settings or AdaptationSettings()
        self.shape = prior_mean.shape
        self.bands = {band: RunningStats(prior_mean[i], prior_var[i],
                                         self.settings.prior_weight, self.settings.window)
                      for i, band in enumerate(BANDS)}

    def standardise(self, rows: np.ndarray, bands: list[str]) -> np.ndarray:
        """(N, F) features -> standardised by their band's current statistics."""
        return np.stack([self._band(b).standardise(r) for r, b in zip(rows, bands, strict=True)])

    def observe(self, rows: np.ndarray, bands: list[str]) -> None:
        if not self.settings.follow:
            return
        for row, band in zip(rows, bands, strict=True):
            self._band(band).update(row)

    def observed(self) -> dict[str, int]:
        return {band: stats.observed for band, stats in self.bands.items()}

    def _band(self, band: str) -> RunningStats:
        if band not in self.bands:
            raise ModelError(f"unknown input kind '{band}'; use one of {BANDS}")
        return self.bands[band]

    # ------------------------------------------------------------ persistence

    def to_bytes(self, model_id: str) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(FORMAT), model_id=np.array(model_id),
                 mean=np.stack([self.bands[b].mean for b in BANDS]),
                 var=np.stack([self.bands[b].var for b in BANDS]),
                 count=np.array([self.bands[b].count for b in BANDS]))
        return buffer.getvalue()

    def load_bytes(self, data: bytes, model_id: str, where: str) -> None:
        """Continue from saved statistics (of the same model and feature size)."""
        try:
            saved = np.load(io.BytesIO(data), allow_pickle=False)
            fmt, saved_id = int(saved["format"]), str(saved["model_id"])
            mean, var, count = saved["mean"], saved["var"], saved["count"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{where}: not a feature statistics file ({exc}); delete it to "
                             "start again from the training population") from exc
        if fmt != FORMAT or saved_id != model_id:
            raise ModelError(f"{where}: statistics of model '{saved_id}' (format {fmt}), but "
                             f"the model is '{model_id}' (format {FORMAT}); delete the file or "
                             "point emotion.adaptation_state elsewhere")
        if mean.shape != self.shape or var.shape != mean.shape \
                or count.shape != (len(BANDS),) or not np.all(np.isfinite(mean)) \
                or not np.all(np.isfinite(var)):
            raise ModelError(f"{where}: damaged statistics (shape {mean.shape}, expected "
                             f"{self.shape}); delete it to start again")
        for i, band in enumerate(BANDS):
            stats = self.bands[band]
            stats.mean, stats.var = mean[i].astype(np.float64), var[i].astype(np.float64)
            stats.count = float(min(max(count[i], 1.0), self.settings.window))


__all__ = ["BANDS", "AdaptationSettings", "DeploymentStats", "RunningStats", "band_of",
           "std_of"]
