"""Hugging Face audio encoders (wav2vec2, WavLM, HuBERT, ...) by reference.

A reference is resolved by ``models.paths.resolve_hf`` (a local directory
saved with ``save_pretrained`` or a hub id); loading is plain
``AutoFeatureExtractor`` / ``AutoModel``. All hidden layers are available for
layer weighting. Output: 50 frames per second (the CNN front end's 20 ms hop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.audio import SAMPLE_RATE
from models.encoders import AudioFeatures
from models.errors import ModelFileError
from models.paths import resolve_hf

MIN_SAMPLES = 400  # the CNN front end needs one 25 ms window


class HFAudioEncoder:
    """Frame-level audio encoder. Frozen: always runs under ``torch.inference_mode``.

    Models whose feature extractor returns an attention mask (WavLM, HuBERT-large,
    wav2vec2-large-lv60) are run batched with that mask; the others (wav2vec2-base
    uses group norm over time, so padding would change its output) run one
    utterance at a time.
    """

    kind = "hf_audio"

    def __init__(self, model: Any, feature_extractor: Any, ref: str, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.feature_extractor = feature_extractor
        self.ref = ref
        self.device = device
        self.dim = int(model.config.hidden_size)
        self.num_layers = int(model.config.num_hidden_layers) + 1  # + CNN/projection output
        self.batched = bool(getattr(feature_extractor, "return_attention_mask", False))

    @classmethod
    def load(cls, ref: str, device: str = "cpu") -> HFAudioEncoder:
        from transformers import AutoFeatureExtractor, AutoModel

        path = resolve_hf(ref)
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(path)
            model = AutoModel.from_pretrained(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(
                f"could not load audio encoder '{ref}' (resolved to '{path}'): {exc}. Use a "
                "directory saved with save_pretrained() holding the model and its "
                "preprocessor_config.json, or a hub id that is cached."
            ) from exc
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise ModelFileError(
                f"audio encoder '{ref}' ({type(model).__name__}) is not a wav2vec2-style model "
                "(wav2vec2, WavLM, HuBERT, data2vec-audio); other audio models are not supported"
            )
        return cls(model, feature_extractor, ref=ref, device=device)

    @torch.inference_mode()
    def encode_items(self, audios: Sequence[np.ndarray], layers: bool = False
                     ) -> list[AudioFeatures]:
        """Encode 16 kHz mono utterances; one AudioFeatures per utterance, unpadded."""
        audios = [_at_least(np.asarray(a, dtype=np.float32)) for a in audios]
        if not audios:
            return []
        if self.batched:
            return self._run(audios, layers)
        out: list[AudioFeatures] = []
        for audio in audios:
            out.extend(self._run([audio], layers))
        return out

    def _run(self, audios: list[np.ndarray], layers: bool) -> list[AudioFeatures]:
        inputs = self.feature_extractor(audios, sampling_rate=SAMPLE_RATE, padding=True,
                                        return_tensors="pt",
                                        return_attention_mask=self.batched)
        values = inputs["input_values"].to(self.device)  # (B, N)
        mask = inputs.get("attention_mask")
        kwargs = {"attention_mask": mask.to(self.device)} if mask is not None else {}
        out = self.model(values, output_hidden_states=layers, **kwargs)
        states = out.last_hidden_state.float().cpu()  # (B, T, D)
        hidden = torch.stack(out.hidden_states, dim=1).float().cpu() if layers else None
        lengths = self.model._get_feat_extract_output_lengths(
            torch.tensor([len(a) for a in audios]))  # (B,)
        result = []
        for i, n in enumerate(lengths.tolist()):
            n = max(1, min(int(n), states.shape[1]))
            result.append(AudioFeatures(
                frames=states[i, :n].clone(),
                layers=None if hidden is None else hidden[i, :, :n].clone(),
            ))
        return result


def _at_least(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono samples, got shape {audio.shape}")
    if len(audio) >= MIN_SAMPLES:
        return audio
    return np.pad(audio, (0, MIN_SAMPLES - len(audio)))
