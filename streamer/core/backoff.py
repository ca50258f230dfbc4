"""Reconnect delays: exponential backoff with jitter, capped (MQTT publisher, gateway,
replica presence).

The delay doubles from ``min_s`` after each failure up to ``max_s``; each wait is that
delay times a random factor in [1 - jitter, 1], so processes that lost the same broker do
not all come back in the same instant. ``reset()`` after a connection succeeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    min_s: float
    max_s: float
    jitter: float = 0.5  # 0: no jitter; 1: anywhere between 0 and the delay
    rng: random.Random = field(default_factory=random.Random)
    _delay_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s or not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"Backoff needs 0 < min_s <= max_s and jitter in [0, 1], got "
                             f"min_s={self.min_s}, max_s={self.max_s}, jitter={self.jitter}")
        self._delay_s = self.min_s

    def reset(self) -> None:
        self._delay_s = self.min_s

    def saturate(self) -> None:
        """Wait the longest from now on (a failure that retrying soon will not fix)."""
        self._delay_s = self.max_s

    def next_s(self) -> float:
        """The wait before the next attempt; the one after it will be twice as long."""
        delay = self._delay_s
        self._delay_s = min(self._delay_s * 2, self.max_s)
        return delay * (1.0 - self.jitter * self.rng.random())

    def at_most(self) -> float:
        """The wait before the next attempt, as a cap (for logs: "retrying within N s")."""
        return self._delay_s
