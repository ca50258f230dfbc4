"""Model bundles: one directory the trainer writes and the streamer serves.

Layout::

    <bundle>/
      bundle.json          format_version, model_id, head {name, config}, labels,
                           encoders {audio, text}, context_size, calibration, training info,
                           sha256 {weights.safetensors: hex digest}
      weights.safetensors  the head's state_dict
      labels.json          the class labels, in logit order (must equal bundle.json's)
      report.json          the evaluation report the weights were trained to ({} if none)

Encoder references in ``encoders``:
- audio ``ref``: ``whisper:<whisper ref>`` (e.g. ``whisper:packaged:tiny.en``; frames come
  from the ASR's own encoder pass), ``hf:<hf ref>`` (wav2vec2 / WavLM / HuBERT by id or
  directory), or ``prosody`` (log-mel + pitch + energy frames, CPU only);
- text ``ref``: a Hugging Face reference (``packaged:all-MiniLM-L6-v2``, a directory, an id).

Integrity: ``save_bundle`` records the sha256 of each weight file in ``bundle.json``
(``sha256``); ``load_bundle`` checks it before reading the tensors (a changed or truncated
file is refused, naming the file and both digests) and refuses tensors with NaN or inf.
A bundle written before the hash existed loads with a warning; ``stamp_sha256`` adds the
hash of the weights it has now.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from models.digests import SHA256_KEY, file_sha256, verify_sha256
from models.encoders.whisper import AUDIO_WINDOWS
from models.errors import BundleError
from models.heads import FusionHead, build_head, head_spec, make_config

FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
WEIGHTS = "weights.safetensors"
LABELS_JSON = "labels.json"
REPORT_JSON = "report.json"
# builtin:default is trained on human speech (RAVDESS: non-commercial licence, see its
# README.md); builtin:synthetic only on this project's synthetic corpus (licence-clean).
BUILTIN = {"builtin:default": Path(__file__).parent / "default_bundle",
           "builtin:synthetic": Path(__file__).parent / "synthetic_bundle"}
LAYER_MODES = ("last", "all")
WEIGHT_FILES = (WEIGHTS,)  # the files the digests cover

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioEncoderSpec:
    ref: str = "whisper:packaged:tiny.en"
    dim: int = 384  # Da of the frames the head was trained on
    layers: str = "last"  # "last" or "all" (all hidden layers; hf audio encoders only)
    # whisper: "full" = the whole utterance, encoded as the ASR encodes it; "fit" = in a
    # window of its own length (layers "all" only: the PyTorch pass that is not the ASR's)
    window: str = "full"


@dataclass(frozen=True)
class TextEncoderSpec:
    ref: str = "packaged:all-MiniLM-L6-v2"
    dim: int = 384  # Dt
    layers: str = "last"  # "last" or "all"
    max_tokens: int = 128
    # Transcript languages the text branch was trained on: any other language (as the ASR
    # reports it) is given to the head as an empty transcript, the audio-only path.
    languages: tuple[str, ...] = ("en",)
    # Words only when they can be trusted: a transcript whose mean word probability (the
    # ASR's own) is under this, or that has fewer words than ``min_words``, is given to the
    # head as empty. An English-only ASR turns other languages into confident-looking English
    # nonsense; its word probabilities say so (fitted on data: docs/transfer.md). 0 = off.
    min_word_probability: float = 0.0
    min_words: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))  # JSON gives a list


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of the head's logits, fitted on held-out speakers, so that
    ``confidence`` means what it says (offline_training/calibration.py)."""

    temperature: float = 1.0  # probabilities = softmax(logits / temperature)
    fitted_on: str = ""  # what the temperature was fitted on (e.g. out-of-fold predictions)
    ece_before: float | None = None  # expected calibration error (15 bins) at T = 1
    ece_after: float | None = None  # ... and at the fitted temperature


@dataclass(frozen=True)
class BundleConfig:
    model_id: str
    head: str  # registry name, see models.heads.HEADS
    head_config: dict[str, Any]  # the head's config fields
    labels: tuple[str, ...]
    audio: AudioEncoderSpec = field(default_factory=AudioEncoderSpec)
    text: TextEncoderSpec = field(default_factory=TextEncoderSpec)
    context_size: int = 0  # past utterances given to context-aware heads
    training: dict[str, Any] = field(default_factory=dict)  # free-form: data, epochs, seed, ...
    format_version: int = FORMAT_VERSION
    calibration: Calibration = field(default_factory=Calibration)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model_id": self.model_id,
            "head": {"name": self.head, "config": dict(self.head_config)},
            "labels": list(self.labels),
            "encoders": {"audio": asdict(self.audio), "text": asdict(self.text)},
            "context_size": self.context_size,
            "calibration": asdict(self.calibration),
            "training": dict(self.training),
        }


@dataclass(frozen=True)
class Bundle:
    path: Path
    config: BundleConfig
    weights: dict[str, Tensor]
    report: dict[str, Any]
    sha256: dict[str, str] = field(default_factory=dict)  # checked digests ({} for old bundles)

    def build_head(self) -> FusionHead:
        """The head with the bundle's weights loaded, in eval mode."""
        head = build_head(self.config.head, self.config.head_config)
        expected = head.state_dict()
        missing = sorted(set(expected) - set(self.weights))
        unexpected = sorted(set(self.weights) - set(expected))
        wrong_shape = [f"{k}: {tuple(self.weights[k].shape)} vs {tuple(v.shape)}"
                       for k, v in expected.items()
                       if k in self.weights and self.weights[k].shape != v.shape]
        if missing or unexpected or wrong_shape:
            raise BundleError(
                f"{self.path / WEIGHTS} does not match head '{self.config.head}' with the config "
                f"in {BUNDLE_JSON}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                f"wrong shape (file vs config) {wrong_shape[:5]}. Re-export the bundle from the "
                "trained head with save_bundle."
            )
        head.load_state_dict(self.weights)
        return head.eval()


def resolve_bundle(ref: str | Path) -> Path:
    """``builtin:default``, ``builtin:synthetic`` or a directory path -> the bundle directory."""
    if isinstance(ref, str) and ref.startswith("builtin:"):
        path = BUILTIN.get(ref)
        if path is None:
            raise BundleError(f"unknown builtin bundle '{ref}'; known: {', '.join(BUILTIN)}")
        return path
    return Path(ref).expanduser()


def save_bundle(directory: str | Path, config: BundleConfig, head: FusionHead,
                report: dict[str, Any] | None = None) -> Path:
    """Write ``head`` and ``config`` as a bundle directory (created if needed)."""
    directory = Path(directory)
    head_spec(config.head)  # unknown names fail here, not at load time
    checked = make_config(config.head, **config.head_config)
    if checked != head.config:
        raise BundleError(
            f"BundleConfig.head_config {config.head_config} does not describe the head being "
            f"saved ({head.config}); pass dataclasses.asdict(head.config)"
        )
    _check_consistent(config, directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
    digests = {name: file_sha256(directory / name) for name in WEIGHT_FILES}
    (directory / BUNDLE_JSON).write_text(
        json.dumps({**config.to_json(), SHA256_KEY: digests}, indent=2) + "\n")
    (directory / LABELS_JSON).write_text(json.dumps(list(config.labels), indent=2) + "\n")
    (directory / REPORT_JSON).write_text(json.dumps(report or {}, indent=2) + "\n")
    return directory


def load_bundle(ref: str | Path) -> Bundle:
    """Read and check a bundle directory; fails naming the file and what was expected."""
    path = resolve_bundle(ref)
    if not path.is_dir():
        raise BundleError(f"bundle directory '{path}' does not exist; expected a directory "
                          f"with {BUNDLE_JSON}, {WEIGHTS}, {LABELS_JSON} and {REPORT_JSON}")
    for name in (BUNDLE_JSON, WEIGHTS, LABELS_JSON, REPORT_JSON):
        if not (path / name).is_file():
            raise BundleError(f"bundle '{path}' has no {name}; a bundle needs {BUNDLE_JSON}, "
                              f"{WEIGHTS}, {LABELS_JSON} and {REPORT_JSON} (use save_bundle)")
    raw = _read_json(path / BUNDLE_JSON)
    config = _config_from_json(raw, path / BUNDLE_JSON)
    labels = _read_json(path / LABELS_JSON)
    if labels != list(config.labels):
        raise BundleError(f"{path / LABELS_JSON} lists {labels} but {path / BUNDLE_JSON} lists "
                          f"{list(config.labels)}; they must be the same labels in the same order")
    report = _read_json(path / REPORT_JSON)
    if not isinstance(report, dict):
        raise BundleError(f"{path / REPORT_JSON} must hold a JSON object (may be {{}})")
    _check_consistent(config, path)
    digests = verify_sha256(path, raw.get(SHA256_KEY), WEIGHT_FILES, path / BUNDLE_JSON,
                            BundleError, REEXPORT)
    try:
        weights = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{path / WEIGHTS} is not a readable safetensors file: {exc}") from exc
    broken = [name for name, tensor in weights.items()
              if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
    if broken:  # a damaged file would give NaN probabilities for every utterance
        raise BundleError(f"{path / WEIGHTS}: tensors {broken[:5]} contain NaN or infinite "
                          "values; the file is damaged: re-export or re-download the bundle")
    return Bundle(path=path, config=config, weights=weights, report=report, sha256=digests)


def stamp_sha256(ref: str | Path) -> dict[str, str]:
    """Record the sha256 of the weight files a bundle has NOW in its ``bundle.json`` (for
    bundles written before the hash existed; the weights are not touched, so only stamp
    weights you trust). The rest of ``bundle.json`` is kept as it is."""
    path = resolve_bundle(ref)
    raw = _read_json(path / BUNDLE_JSON)
    if not isinstance(raw, dict):
        raise BundleError(f"{path / BUNDLE_JSON} must hold a JSON object")
    digests = {name: file_sha256(path / name) for name in WEIGHT_FILES}
    raw[SHA256_KEY] = digests
    (path / BUNDLE_JSON).write_text(json.dumps(raw, indent=2) + "\n")
    return digests


# ------------------------------------------------------------------ content hashes
REEXPORT = "re-export the bundle (emotion-train, offline_training/export.py)"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc


def _config_from_json(raw: Any, where: Path) -> BundleConfig:
    if not isinstance(raw, dict):
        raise BundleError(f"{where} must hold a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: format_version is {version!r}, this code reads version "
                          f"{FORMAT_VERSION}; re-export the bundle with this version's trainer")
    required = ("model_id", "head", "labels", "encoders")
    missing = [key for key in required if key not in raw]
    if missing:
        raise BundleError(f"{where} is missing {missing}; expected keys {list(required)}")
    head = raw["head"]
    if not isinstance(head, dict) or "name" not in head or "config" not in head:
        raise BundleError(f"{where}: 'head' must be {{\"name\": ..., \"config\": {{...}}}}")
    encoders = raw["encoders"]
    try:
        audio = AudioEncoderSpec(**encoders["audio"])
        text = TextEncoderSpec(**encoders["text"])
    except (KeyError, TypeError) as exc:
        raise BundleError(
            f"{where}: 'encoders' must have 'audio' {list(AudioEncoderSpec.__dataclass_fields__)}"
            f" and 'text' {list(TextEncoderSpec.__dataclass_fields__)}: {exc}"
        ) from exc
    try:  # bundles written before calibration existed have none: temperature 1
        calibration = Calibration(**raw.get("calibration", {}))
    except TypeError as exc:
        raise BundleError(f"{where}: 'calibration' must have the keys "
                          f"{list(Calibration.__dataclass_fields__)}: {exc}") from exc
    return BundleConfig(
        model_id=str(raw["model_id"]), head=str(head["name"]), head_config=dict(head["config"]),
        labels=tuple(raw["labels"]), audio=audio, text=text,
        context_size=int(raw.get("context_size", 0)), training=dict(raw.get("training", {})),
        format_version=int(version), calibration=calibration,
    )


def _check_consistent(config: BundleConfig, path: Path) -> None:
    where = path / BUNDLE_JSON
    try:
        head_config = make_config(config.head, **config.head_config)
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{where}: head '{config.head}' config is invalid: {exc}") from exc
    if head_config.num_classes != len(config.labels):
        raise BundleError(f"{where}: head config num_classes={head_config.num_classes} but "
                          f"there are {len(config.labels)} labels")
    if head_config.audio_dim != config.audio.dim or head_config.text_dim != config.text.dim:
        raise BundleError(
            f"{where}: head config audio_dim/text_dim = {head_config.audio_dim}/"
            f"{head_config.text_dim} but the encoders give {config.audio.dim}/{config.text.dim}"
        )
    if config.audio.window not in AUDIO_WINDOWS:
        raise BundleError(f"{where}: encoders.audio.window is '{config.audio.window}'; "
                          f"expected one of {AUDIO_WINDOWS}")
    if config.audio.window == "fit" and not (config.audio.layers == "all"
                                             and config.audio.ref.startswith("whisper:")):
        raise BundleError(f"{where}: encoders.audio.window 'fit' needs a whisper encoder with "
                          f"layers 'all' (got '{config.audio.ref}', layers "
                          f"'{config.audio.layers}'); use 'full'")
    for spec_name, mode in (("audio", config.audio.layers), ("text", config.text.layers)):
        if mode not in LAYER_MODES:
            raise BundleError(f"{where}: encoders.{spec_name}.layers is '{mode}', "
                              f"expected one of {LAYER_MODES}")
    temperature = config.calibration.temperature
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)
            and temperature > 0):
        raise BundleError(f"{where}: calibration.temperature must be a positive number, got "
                          f"{temperature!r}")
    if config.context_size < 0:
        raise BundleError(f"{where}: context_size must be >= 0, got {config.context_size}")
    head_context = getattr(head_config, "context_size", 0)
    if config.context_size < head_context:
        raise BundleError(f"{where}: the head uses {head_context} past utterances (head config "
                          f"context_size) but the bundle's context_size is {config.context_size}; "
                          "set the bundle's context_size to at least the head's")


__all__ = [
    "AudioEncoderSpec", "Bundle", "BundleConfig", "Calibration", "FORMAT_VERSION",
    "TextEncoderSpec",
    "file_sha256", "load_bundle", "resolve_bundle", "save_bundle", "stamp_sha256",
    "verify_sha256",
]
