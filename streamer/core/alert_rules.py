"""Alert rules as configured, sans I/O: their types, how they are read (inline
``alerts.rules`` or a YAML ``alerts.rules_file``) and checked, and one line describing each.

The rules are part of the configuration (``streamer/core/config.py`` checks them when the config
loads); ``streamer/supervise/alerts.py`` evaluates them on the events. Rule kinds and their fields:
docs/alerts.md.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from streamer.core.errors import ConfigError
from streamer.core.typed_config import check_nesting, from_dict
from streamer.core.validation import is_identifier

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 1, "warning": 2, "critical": 3}
CALL_CHANNEL = "call"  # the channel of call-wide alerts and summaries
HISTORY_PER_PARTY = 64  # speech utterances kept per party (bounds n and the trend window)


@dataclass(frozen=True)
class RuleBase:
    id: str
    severity: Severity = "warning"
    cooldown_s: float = 60.0
    channels: tuple[str, ...] | None = None  # parties the rule looks at; None: every party


@dataclass(frozen=True)
class LabelCount(RuleBase):
    label: str = "angry"
    min_confidence: float = 0.7
    k: int = 2
    n: int = 3
    kind: Literal["label_count"] = "label_count"


@dataclass(frozen=True)
class ValenceTrend(RuleBase):
    window_s: float = 60.0
    max_slope_per_min: float = -0.3
    min_utterances: int = 3
    kind: Literal["valence_trend"] = "valence_trend"


@dataclass(frozen=True)
class BothParties(RuleBase):
    label: str = "angry"
    min_confidence: float = 0.5
    within_s: float = 30.0
    kind: Literal["both_parties"] = "both_parties"


@dataclass(frozen=True)
class Silence(RuleBase):
    min_s: float = 30.0
    kind: Literal["silence"] = "silence"


Rule = LabelCount | ValenceTrend | BothParties | Silence
RULE_KINDS: dict[str, type[Rule]] = {
    "label_count": LabelCount, "valence_trend": ValenceTrend,
    "both_parties": BothParties, "silence": Silence}
CALL_WIDE = (BothParties, Silence)


# ---------------------------------------------------------------- configuration


def parse_rules(data: Any, where: str = "alerts.rules",
                labels: tuple[str, ...] | None = None) -> tuple[Rule, ...]:
    """Rules from their configuration (a list of mappings); a ConfigError names the bad
    rule (by id when it has one, else by position) and says what is allowed. ``labels``:
    the emotion model's labels (None: not known yet), which rules' ``label`` must be one of:
    a rule on another label would never fire."""
    if data is None:
        return ()
    if not isinstance(data, list | tuple):
        raise ConfigError(f"{where} must be a list of rule mappings (docs/alerts.md), "
                          f"got {type(data).__name__}")
    rules: list[Rule] = []
    for i, item in enumerate(data):
        name = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"alert rule {name} must be a mapping with id and kind, "
                              f"got {item!r}")
        rule_id = item.get("id")
        if not is_identifier(rule_id):
            raise ConfigError(f"alert rule {name} needs an 'id': a short printable name "
                              f"without '/', '+' or '#' (got {rule_id!r})")
        name = f"'{rule_id}' ({name})"
        kind = item.get("kind")
        if kind not in RULE_KINDS:
            raise ConfigError(f"alert rule {name}: kind {kind!r} is unknown; use one of "
                              f"{', '.join(RULE_KINDS)}")
        fields = {k: v for k, v in item.items() if k != "kind"}
        try:
            rule = from_dict(RULE_KINDS[kind], fields, prefix="")
        except ConfigError as exc:
            raise ConfigError(f"alert rule {name}: {exc}") from exc
        problem = rule_problem(rule)
        if problem:
            raise ConfigError(f"alert rule {name}: {problem}")
        if (labels is not None and isinstance(rule, LabelCount | BothParties)
                and rule.label not in labels):
            raise ConfigError(f"alert rule {name}: label {rule.label!r} is not a label of the "
                              f"emotion model, so the rule would never fire; use one of "
                              f"{', '.join(labels)}")
        if any(r.id == rule.id for r in rules):
            raise ConfigError(f"alert rule {name}: the id is used by another rule; ids must "
                              "be unique")
        rules.append(rule)
    return tuple(rules)


def load_rules(rules: Any, rules_file: str | None,
               labels: tuple[str, ...] | None = None) -> tuple[Rule, ...]:
    """The configured rules: inline ``alerts.rules`` or the YAML list in ``rules_file``."""
    if rules_file is None:
        check_nesting(rules, "alerts.rules")
        return parse_rules(rules, labels=labels)
    if rules:
        raise ConfigError("set alerts.rules or alerts.rules_file, not both (rules_file is "
                          "re-read while running, alerts.rules is not)")
    path = Path(rules_file).expanduser()
    try:
        # A FIFO or a device would block the read (and the service) forever.
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError(f"alerts.rules_file '{path}' is not a regular file (a FIFO, "
                              "device or directory); give a YAML file holding a list of rules")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"alerts.rules_file '{path}' cannot be read ({exc}); give an "
                          "existing YAML file holding a list of rules") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"alerts.rules_file '{path}' is not UTF-8 text ({exc.reason} at "
                          f"byte {exc.start}); save it as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"alerts.rules_file '{path}' is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"alerts.rules_file '{path}' is nested too deeply to read") from exc
    check_nesting(data, f"alerts.rules_file '{path}'")
    return parse_rules(data, where=str(path), labels=labels)


def rule_problem(rule: Rule) -> str | None:
    """What is out of range in ``rule`` (None: nothing)."""
    if rule.cooldown_s < 0:
        return "cooldown_s must be >= 0"
    if rule.channels is not None and (not rule.channels or not all(rule.channels)):
        return "channels must list at least one party name (or be left out: every party)"
    if isinstance(rule, LabelCount | BothParties):
        if not 0.0 <= rule.min_confidence <= 1.0:
            return f"min_confidence must be 0..1, got {rule.min_confidence}"
        if not rule.label:
            return "label must be a label of the model, e.g. angry"
    if isinstance(rule, LabelCount) and not 1 <= rule.k <= rule.n <= HISTORY_PER_PARTY:
        return (f"k and n must satisfy 1 <= k <= n <= {HISTORY_PER_PARTY} "
                f"(got k={rule.k}, n={rule.n})")
    if isinstance(rule, ValenceTrend):
        if rule.window_s <= 0:
            return "window_s must be > 0"
        if rule.min_utterances < 2:
            return "min_utterances must be >= 2 (a trend needs two points)"
        if rule.max_slope_per_min >= 0:
            return ("max_slope_per_min must be < 0: the rule fires on a falling valence "
                    f"(got {rule.max_slope_per_min})")
    if isinstance(rule, BothParties):
        if rule.within_s <= 0:
            return "within_s must be > 0"
        if rule.channels is not None and len(rule.channels) < 2:
            return "channels must name at least two parties (or be left out: every party)"
    if isinstance(rule, Silence) and rule.min_s <= 0:
        return "min_s must be > 0"
    return None


def describe_rule(rule: Rule) -> str:
    """One line for people: what the rule watches."""
    who = "/".join(rule.channels) if rule.channels else "any party"
    if isinstance(rule, LabelCount):
        return (f"{who} {rule.label} (confidence >= {rule.min_confidence:.2f}) in {rule.k} "
                f"of the last {rule.n} utterances")
    if isinstance(rule, ValenceTrend):
        return (f"{who} valence falling by {-rule.max_slope_per_min:.2f}/min or more over "
                f"{rule.window_s:.0f} s")
    if isinstance(rule, BothParties):
        return f"{who if rule.channels else 'every party'} {rule.label} at once"
    return f"silence longer than {rule.min_s:.0f} s"
