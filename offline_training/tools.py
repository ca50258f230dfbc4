"""Running external command-line tools (espeak-ng, sox, ffmpeg) with clear errors."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from offline_training.errors import ToolError

INSTALL_HINT = {
    "espeak-ng": "apt-get install espeak-ng",
    "sox": "apt-get install sox",
    "ffmpeg": "apt-get install ffmpeg",
}


def require_tool(name: str) -> str:
    """Return the executable path of ``name`` or raise a ToolError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINT.get(name, f"install {name}")
        raise ToolError(f"'{name}' was not found on PATH; install it ({hint})")
    return path


def run_tool(args: Sequence[str]) -> None:
    """Run a tool; raise ToolError with its stderr when it fails."""
    require_tool(args[0])
    try:
        subprocess.run(list(args), check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace").strip()
        raise ToolError(f"{args[0]} failed (exit {exc.returncode}): {' '.join(args)}\n{stderr}") \
            from exc
