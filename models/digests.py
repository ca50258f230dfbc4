"""Content hashes of model files (bundles, the text affect model): one sha256 per weight
file, recorded in the model's JSON manifest and checked at load. Its own module so that
``models.bundle`` and ``models.text_affect`` (which the bundle's heads import) share it
without importing each other."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

SHA256_KEY = "sha256"  # manifest key: {weight file name: sha256 hex digest}

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_warned_unhashed: set[str] = set()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(directory: Path, recorded: Any, files: tuple[str, ...], manifest: Path,
                  error: type[Exception], rebuild: str) -> dict[str, str]:
    """Check ``files`` in ``directory`` against ``recorded`` (the manifest's ``sha256``:
    ``{file name: hex digest}``); raise ``error`` naming the file, both digests and what to
    do (``rebuild``, or re-download). ``recorded`` None (a model written before hashes
    existed): warn once, return {}.
    Shared by bundles and the text affect model (``models.text_affect``)."""
    if recorded is None:
        if str(directory) not in _warned_unhashed:
            _warned_unhashed.add(str(directory))
            log.warning("%s has no '%s' entry: the weights in %s are loaded without an "
                        "integrity check (written before content hashes existed); %s, or "
                        "record the digests of the files you trust with "
                        "models.bundle.stamp_sha256", manifest, SHA256_KEY, directory, rebuild)
        return {}
    if (not isinstance(recorded, dict) or any(not isinstance(v, str) or not _HEX64.fullmatch(v)
                                              for v in recorded.values())):
        raise error(f"{manifest}: '{SHA256_KEY}' must map file names to sha256 hex digests "
                    f"(64 lowercase hex characters), got {str(recorded)[:200]}; {rebuild}")
    missing = [name for name in files if name not in recorded]
    unknown = sorted(set(recorded) - set(files))
    if missing or unknown:
        raise error(f"{manifest}: '{SHA256_KEY}' lists {sorted(recorded)}, expected exactly "
                    f"{list(files)}; {rebuild}")
    for name in files:
        try:
            actual = file_sha256(directory / name)
        except OSError as exc:
            raise error(f"{directory / name} cannot be read: {exc}") from exc
        if actual != recorded[name]:
            size = (directory / name).stat().st_size
            raise error(
                f"{directory / name} does not match its recorded content hash: sha256 "
                f"expected {recorded[name]} (from {manifest.name}), actual {actual} "
                f"({size} bytes). The file was changed, replaced or cut short after it was "
                f"written; {rebuild}, or re-download it.")
    return dict(recorded)
