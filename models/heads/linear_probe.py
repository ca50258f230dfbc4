"""linear_probe: the floor every head must beat.

Mean + std pooled audio frames (of every encoder layer when the features carry them:
``audio_layers`` > 1, or of the range ``pool_layers_from``..``pool_layers_to``), mean + std
pooled text token states when the probe uses text, and the 28 GoEmotions label scores of the
words (models/text_affect.py) when it uses ``affect``, standardised with the training fold's
mean and std (buffers, so a bundle carries them), then one linear layer. The trainer fits it
in closed form (scikit-learn logistic regression, ``offline_training.train.fit_linear_probe``)
and copies the solution into ``standardise_*`` and ``classifier``; it is an ordinary
``nn.Module`` too, so it also serves and trains like any head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput, audio_or_layers
from models.layers import masked_mean
from models.text_affect import GOEMOTIONS_LABELS, TextAffect, affect_scores, pooled_text

MODALITIES = ("audio", "text", "audio+text", "affect", "audio+affect")


@dataclass(frozen=True, kw_only=True)
class LinearProbeConfig(HeadConfig):
    modalities: str = "audio+text"  # which pooled features the probe reads
    audio_layers: int = 1  # La the audio features carry (all hidden layers: each is pooled)
    # The layers pooled: [pool_layers_from, pool_layers_to) of the La (to = 0: through the
    # last). Whisper base's middle layers transfer across corpora better than its first and
    # last (docs/transfer.md); older bundles pool every layer.
    pool_layers_from: int = 0
    pool_layers_to: int = 0
    affect_labels: int = len(GOEMOTIONS_LABELS)  # text affect scores read with "affect"
    # The trainer weighs the standardised affect scores by this against the audio dimensions
    # (less L2 shrinkage for the few text scores; folded into standardise_std when fitted).
    affect_scale: float = 1.0
    # Audio features standardised by the statistics of where they come from before the
    # probe's own standardisation (models/feature_stats.py): trained per corpus, served
    # per deployment. The bundle carries the training population's (one row per band).
    domain_standardise: bool = False


def masked_mean_std(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D), (B, T) -> (B, 2D) = [mean; std] over the valid positions (zeros if none)."""
    mean = masked_mean(x, mask)  # (B, D)
    var = masked_mean((x - mean.unsqueeze(1)) ** 2, mask)  # (B, D)
    return torch.cat([mean, (var + 1e-6).sqrt()], dim=-1)


class LinearProbeHead(FusionHead):
    config_cls = LinearProbeConfig
    closed_form = True  # the trainer fits it with fit_linear_probe, not by gradient steps
    needs_audio_layers = True  # pooled per layer when the cache has them (else L = 1)
    standardise_mean: Tensor  # (F,) buffers
    standardise_std: Tensor
    affect_weight: Tensor  # (A, Dt), (A,) with "affect" only
    affect_bias: Tensor
    domain_mean: Tensor  # (len(BANDS), Fa), (len(BANDS), Fa) with domain_standardise only
    domain_var: Tensor

    def __init__(self, config: LinearProbeConfig) -> None:
        super().__init__(config)
        if config.modalities not in MODALITIES:
            raise ValueError(f"linear_probe: modalities '{config.modalities}' is not one of "
                             f"{MODALITIES}")
        self.use_audio = "audio" in config.modalities
        self.use_text = "text" in config.modalities
        self.use_affect = "affect" in config.modalities
        self.audio_layers = config.audio_layers
        self.pooled_layers = range(config.pool_layers_from,
                                   config.pool_layers_to or config.audio_layers)
        if not self.pooled_layers or self.pooled_layers.stop > config.audio_layers:
            raise ValueError(f"linear_probe: pool_layers_from={config.pool_layers_from}, "
                             f"pool_layers_to={config.pool_layers_to} is not a range of layers "
                             f"of the {config.audio_layers} the features carry")
        affect = config.affect_labels if self.use_affect else 0
        dim = 2 * (config.audio_dim * len(self.pooled_layers) * self.use_audio
                   + config.text_dim * self.use_text) + affect
        self.feature_dim = dim
        # The text affect regressions (set_text_affect), part of the bundle like the rest;
        # only probes that read them have them (older bundles stay loadable).
        if self.use_affect:
            self.register_buffer("affect_weight", torch.zeros(affect, config.text_dim))
            self.register_buffer("affect_bias", torch.zeros(affect))
        # Identity until fitted; stored in the state dict, hence in the bundle.
        self.audio_feature_dim = 2 * config.audio_dim * len(self.pooled_layers) * self.use_audio
        self.domain_standardise = config.domain_standardise
        if config.domain_standardise:
            from models.feature_stats import BANDS

            if not self.use_audio:
                raise ValueError("linear_probe: domain_standardise needs audio features")
            self.register_buffer("domain_mean", torch.zeros(len(BANDS), self.audio_feature_dim))
            self.register_buffer("domain_var", torch.ones(len(BANDS), self.audio_feature_dim))
        self.register_buffer("standardise_mean", torch.zeros(dim))
        self.register_buffer("standardise_std", torch.ones(dim))
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(dim, config.num_classes)
        self.make_regressor(dim)

    @property
    def modalities(self) -> tuple[str, ...]:
        return (("audio",) if self.use_audio else ()) + \
            (("text",) if self.use_text or self.use_affect else ())

    def pooled(self, batch: HeadBatch) -> tuple[Tensor, Tensor]:
        """Unstandardised pooled features: (B, 2Da) audio, (B, 2Dt) text (width 0 if unused)."""
        batch = self.downsampled(batch)
        b = batch.batch_size
        audio = batch.audio.new_zeros(b, 0, dtype=torch.float32)
        if self.use_audio:
            layers = audio_or_layers(batch) if self.audio_layers > 1 \
                else batch.audio.unsqueeze(1)  # (B, L, T, D)
            if layers.shape[1] != self.audio_layers:
                raise ValueError(f"linear_probe: audio_layers={self.audio_layers} but "
                                 f"the batch has {layers.shape[1]} layer(s)")
            audio = torch.cat([masked_mean_std(layers[:, i].float(), batch.audio_mask)
                               for i in self.pooled_layers], dim=-1)
        parts = []
        if self.use_text:
            parts.append(masked_mean_std(batch.text.float(), batch.text_mask))
        if self.use_affect:
            parts.append(affect_scores(pooled_text(batch.text, batch.text_mask),
                                       self.affect_weight, self.affect_bias))
        text = (torch.cat(parts, dim=-1) if parts
                else batch.text.new_zeros(b, 0, dtype=torch.float32))
        return audio, text

    def set_text_affect(self, affect: TextAffect) -> None:
        """Load the text affect regressions the ``affect`` features are computed with."""
        if not self.use_affect:
            raise ValueError("linear_probe: set_text_affect on a probe without 'affect'")
        expected = tuple(self.affect_weight.shape)
        if tuple(affect.weight.shape) != expected:
            raise ValueError(f"linear_probe: text affect weights {tuple(affect.weight.shape)} "
                             f"do not fit this probe ({expected}: affect_labels x text_dim)")
        with torch.no_grad():
            self.affect_weight.copy_(affect.weight)
            self.affect_bias.copy_(affect.bias)

    def probe_features(self, batch: HeadBatch) -> Tensor:
        """(B, F): what the logistic regression is fitted on (before standardisation)."""
        return torch.cat(self.pooled(batch), dim=-1)

    def set_solution(self, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor) -> None:
        """Load a fitted standardisation (F,), (F,) and linear layer (C, F), (C,)."""
        expected = {"mean": (self.feature_dim,), "std": (self.feature_dim,),
                    "weight": tuple(self.classifier.weight.shape),
                    "bias": tuple(self.classifier.bias.shape)}
        given = {"mean": mean, "std": std, "weight": weight, "bias": bias}
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(f"linear_probe: {name} has shape {tuple(given[name].shape)}, "
                                 f"expected {shape}")
        with torch.no_grad():
            self.standardise_mean.copy_(mean)
            self.standardise_std.copy_(std)
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)

    def set_domain_prior(self, mean: Tensor, var: Tensor) -> None:
        """The training population's audio feature statistics, (len(BANDS), Fa) each."""
        if not self.domain_standardise:
            raise ValueError("linear_probe: set_domain_prior on a probe without "
                             "domain_standardise")
        with torch.no_grad():
            self.domain_mean.copy_(mean)
            self.domain_var.copy_(var)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        """Served without deployment statistics: audio standardised by the training
        population's wideband statistics (``models.inference`` passes the deployment's)."""
        audio, text = self.pooled(batch)
        if self.domain_standardise:
            from models.feature_stats import STD_FLOOR

            audio = (audio - self.domain_mean[0]) / self.domain_var[0].clamp(
                min=STD_FLOOR ** 2).sqrt()
        return self.classify(audio, text)

    def classify(self, audio: Tensor, text: Tensor) -> HeadOutput:
        """Logits from pooled features (audio already domain-standardised if configured)."""
        features = (torch.cat([audio, text], dim=-1) - self.standardise_mean) / \
            self.standardise_std
        features = self.drop(features)
        return HeadOutput(logits=self.classifier(features), aux_loss=None,
                          regression=self.regress(features), pooled_audio=audio,
                          pooled_text=text)
