"""Writing a trained head as a bundle the streamer serves (via ``models.bundle``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from offline_training.features import FeatureSpec


def export_bundle(directory: Path, head: Any, model_id: str, labels: tuple[str, ...],
                  spec: FeatureSpec, audio_dim: int, text_dim: int, context_size: int,
                  training: dict[str, Any], report: dict[str, Any]) -> Path:
    """Save ``head`` with the encoder settings its features came from.

    ``save_bundle`` records the sha256 of the weights in ``bundle.json``; the bundle is read
    back once (hash, tensors, config) so a bad export fails here, not in the streamer."""
    from models.bundle import (
        AudioEncoderSpec,
        BundleConfig,
        TextEncoderSpec,
        load_bundle,
        save_bundle,
    )

    config = BundleConfig(
        model_id=model_id, head=training["head"],
        head_config=dataclasses.asdict(head.config), labels=labels,
        audio=AudioEncoderSpec(ref=spec.audio, dim=audio_dim,
                               layers="all" if spec.audio_layers else "last",
                               window=spec.audio_window),
        text=TextEncoderSpec(ref=spec.text, dim=text_dim,
                             layers="all" if spec.text_layers else "last",
                             max_tokens=spec.max_tokens),
        context_size=context_size if getattr(head, "needs_context", False) else 0,
        training=training,
    )
    path = save_bundle(directory, config, head.cpu(), report)
    load_bundle(path)
    return path
