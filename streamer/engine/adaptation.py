"""Keeps the emotion model's deployment feature statistics (models/feature_stats.py) in a
file across restarts: read once at start, rewritten every ``emotion.adaptation_save_s`` and at
shutdown (atomically: a crash never leaves half a file).

The statistics themselves live in ``EmotionModel`` and are updated by the fusion worker; this
is only the file shell around ``EmotionModel.adaptation_state``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from models.errors import ModelError
from models.inference import EmotionModel
from streamer.core.config import AppConfig
from streamer.core.errors import ModelLoadError

LOG = logging.getLogger(__name__)
AUTO = "auto"


def state_path(config: AppConfig, model_id: str, persist_by_default: bool) -> Path | None:
    """Where the statistics are kept: ``emotion.adaptation_state``, with "auto" resolved to
    the user state directory when the caller persists by default (``serve``)."""
    setting = config.emotion.adaptation_state
    if setting is None or (setting == AUTO and not persist_by_default):
        return None
    if setting != AUTO:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in model_id)
    return Path(base) / "emotion-stream" / f"feature-stats-{safe}.npz"


class AdaptationStore:
    """The file of one model's deployment statistics."""

    def __init__(self, model: EmotionModel, path: Path, save_every_s: float) -> None:
        self.model = model
        self.path = path
        self.save_every_s = save_every_s
        self.saves = 0

    def load(self) -> bool:
        """Continue from the file if there is one; a damaged or foreign file stops the start
        with what to do (deleting it starts again from the training population)."""
        if not self.path.is_file():
            LOG.info("feature statistics: starting from the training population (%s will "
                     "keep them)", self.path)
            return False
        try:
            self.model.load_adaptation_state(self.path.read_bytes(), str(self.path))
        except OSError as exc:
            raise ModelLoadError(f"emotion.adaptation_state '{self.path}' cannot be read "
                                 f"({exc}); fix its permissions or set another path") from exc
        except ModelError as exc:
            raise ModelLoadError(str(exc)) from exc
        LOG.info("feature statistics: continued from %s", self.path)
        return True

    def save(self) -> None:
        data = self.model.adaptation_state()
        if data is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.path)
        self.saves += 1

    def keep(self) -> None:
        """``save``; a failure is logged, not raised: a full disk must not stop recognition."""
        try:
            self.save()
        except OSError as exc:
            LOG.error("feature statistics could not be saved to %s: %s", self.path, exc)

    async def run(self) -> None:
        """Save periodically until cancelled (the final save is the owner's, at exit)."""
        while True:
            await asyncio.sleep(self.save_every_s)
            await asyncio.to_thread(self.keep)


def open_store(config: AppConfig, model: EmotionModel, persist_by_default: bool
               ) -> AdaptationStore | None:
    """The store for ``model``, loaded; None when it keeps no statistics or no file, or
    when its statistics do not follow the deployment (``emotion.adaptation`` off when it was
    loaded: the training population's, fixed)."""
    if model.adaptation is None or not model.adaptation.settings.follow:
        return None
    path = state_path(config, model.model_id, persist_by_default)
    if path is None:
        return None
    store = AdaptationStore(model, path, config.emotion.adaptation_save_s)
    store.load()
    return store


__all__ = ["AdaptationStore", "open_store", "state_path"]
