"""Which process writes files when training runs under ``accelerate launch`` (or torchrun)."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True in a normal run and in the rank-0 process of a distributed run."""
    return os.environ.get("RANK", "0") == "0"
