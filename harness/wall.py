"""The supervisor wall's synthetic load: calls in three queues, alert rules, and each call's
events (``tests/dashboard/test_wall.py``, ``test_alert_feed_browser.py``,
``bench/wall_render.py``)."""

from __future__ import annotations

from harness import conversation as conv

QUEUES = ("billing", "sales", "support")
RULES = [
    {"id": "customer-angry", "kind": "label_count", "channels": ["customer"],
     "label": "angry", "min_confidence": 0.7, "k": 1, "n": 1, "severity": "critical",
     "cooldown_s": 0},
    {"id": "customer-sad", "kind": "label_count", "channels": ["customer"], "label": "sad",
     "min_confidence": 0.6, "k": 2, "n": 2, "severity": "warning"},
    {"id": "agent-angry", "kind": "label_count", "channels": ["agent"], "label": "angry",
     "min_confidence": 0.6, "k": 1, "n": 1, "severity": "info"},
]
LABELS = ("neutral", "happy", "neutral", "sad")


def call_id(i: int) -> str:
    return f"{QUEUES[i % len(QUEUES)]}-{i:04d}"


def call_events(i: int) -> list[dict]:  # type: ignore[type-arg]
    """Two parties, a few utterances each; calls 0, 25, 50, ... sad twice (warning)."""
    sid = call_id(i)
    out = [conv.started(sid, "customer"), conv.started(sid, "agent")]
    for k in range(3):
        customer = "sad" if i % 25 == 0 else LABELS[(i + k) % len(LABELS)]
        if customer == "sad" and i % 25 != 0:
            customer = "neutral"
        valence = 0.4 - 0.3 * k if i % 25 == 0 else 0.2 * ((i * k + k) % 5) - 0.4
        out.append(conv.emotion(sid, "customer", k, 6.0 * k, 6.0 * k + 2.5, "words here",
                                customer, 0.8, valence=valence, arousal=0.5))
        agent = "angry" if i == 13 and k == 2 else "neutral"
        out.append(conv.emotion(sid, "agent", k, 6.0 * k + 3, 6.0 * k + 5, "agent words",
                                agent, 0.75, valence=0.2, arousal=0.3))
    return out
