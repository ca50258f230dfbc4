"""The alert rule engine (sans I/O): every rule kind fires, clears and cools down as
documented, on events built by the real builders; malformed rules are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import conversation as conv
from streamer.core.alert_rules import (
    BothParties,
    LabelCount,
    Silence,
    ValenceTrend,
    load_rules,
    parse_rules,
)
from streamer.core.config import load_config
from streamer.core.errors import ConfigError
from streamer.core.events import Event, validate_event
from streamer.supervise.alerts import AlertEngine

ANGRY_2_OF_3 = LabelCount(id="customer-angry", channels=("customer",), label="angry",
                          min_confidence=0.7, k=2, n=3, severity="critical", cooldown_s=30)


class Feed:
    """Feeds one call's events to an engine with an explicit clock; keeps what came out."""

    def __init__(self, *rules, stream: str = "call-1",  # type: ignore[no-untyped-def]
                 parties: tuple[str, ...] = ("customer", "agent")) -> None:
        self.engine = AlertEngine(rules)
        self.stream = stream
        self.now = 1000.0
        self.index: dict[str, int] = {}
        self.out: list[Event] = []
        for party in parties:
            self.send(conv.started(stream, party))

    def send(self, event: Event) -> list[Event]:
        got = self.engine.feed(event, self.now)
        for e in got:
            validate_event(e)
        self.out += got
        return got

    def say(self, party: str, label: str, confidence: float = 0.8, t: float | None = None,
            valence: float | None = None, speech: bool = True) -> list[Event]:
        i = self.index.get(party, 0)
        self.index[party] = i + 1
        t0 = t if t is not None else self.now - 999.0
        self.now += 3.0
        event = conv.emotion(self.stream, party, i, t0, t0 + 2.0, "some words here", label,
                             confidence, valence=valence)
        if not speech:
            event = {**event, "speech": False, "label": "unknown", "probabilities": {},
                     "confidence": 0.0, "abstain_reason": "no_speech", "modalities": []}
        return self.send(event)

    def tick(self, seconds: float) -> list[Event]:
        self.now += seconds
        got = self.engine.tick(self.now)
        for e in got:
            validate_event(e)
        self.out += got
        return got

    def types(self) -> list[str]:
        return [e["type"] for e in self.out]


def test_label_count_fires_on_k_of_n_and_clears_when_diluted() -> None:
    f = Feed(ANGRY_2_OF_3)
    assert f.say("customer", "angry", 0.9) == []
    assert f.say("customer", "angry", 0.6) == []  # below min_confidence: does not count
    assert f.say("agent", "angry", 0.95) == []  # another party: not in the rule's scope
    [alert] = f.say("customer", "angry", 0.75)
    assert alert["type"] == "alert" and alert["rule_id"] == "customer-angry"
    assert alert["channel"] == "customer" and alert["severity"] == "critical"
    assert alert["utterance_ids"] == ["call-1/customer/0", "call-1/customer/2"]
    # it cites them, so a consumer (the alert feed, a webhook) needs no history of its own
    assert [(u["utterance_id"], u["channel"], u["text"], u["label"], u["confidence"])
            for u in alert["utterances"]] == [
        ("call-1/customer/0", "customer", "some words here", "angry", 0.9),
        ("call-1/customer/2", "customer", "some words here", "angry", 0.75)]
    assert alert["value"] == 2 and alert["t_start"] is not None
    assert alert["trigger_wall_time"] is not None
    assert "2 of the last 3" in alert["message"]
    assert f.say("customer", "angry", 0.8) == []  # still holding: no second alert
    assert f.say("customer", "neutral") == []  # 2 of the last 3 still angry
    [cleared] = f.say("customer", "neutral")
    assert cleared["type"] == "alert.cleared" and cleared["alert_id"] == alert["alert_id"]
    assert cleared["reason"] == "condition_ended" and cleared["active_s"] == 9.0


def test_non_speech_utterances_do_not_count_among_the_last_n() -> None:
    f = Feed(ANGRY_2_OF_3)
    f.say("customer", "angry")
    f.say("customer", "unknown", speech=False)
    f.say("customer", "unknown", speech=False)
    assert f.say("customer", "angry")[0]["type"] == "alert"


def test_cool_down_holds_a_rule_back_after_it_cleared() -> None:
    f = Feed(ANGRY_2_OF_3)  # cooldown_s=30
    f.say("customer", "angry")
    f.say("customer", "angry")
    f.say("customer", "neutral")
    f.say("customer", "neutral")
    assert f.types() == ["alert", "alert.cleared"]
    f.say("customer", "angry")
    assert f.say("customer", "angry") == []  # condition holds again, 6 s after the clear
    assert f.tick(10.0) == []
    [again] = f.tick(15.0)  # 31 s after the clear: it still holds, so it fires now
    assert again["type"] == "alert" and again["trigger_wall_time"] is None
    assert f.types() == ["alert", "alert.cleared", "alert"]


def test_each_party_and_each_call_has_its_own_alert() -> None:
    rule = LabelCount(id="anyone-angry", label="angry", min_confidence=0.5, k=1, n=1)
    f = Feed(rule)
    [a] = f.say("customer", "angry")
    [b] = f.say("agent", "angry")
    assert (a["channel"], b["channel"]) == ("customer", "agent")
    assert a["alert_id"] != b["alert_id"]
    other = f.engine.feed(conv.emotion("call-2", "customer", 0, 1.0, 2.0, "hi", "angry", 0.9),
                          f.now)
    assert [e["stream_id"] for e in other] == ["call-2"]


def test_valence_trend_fires_on_a_falling_slope_and_clears_when_it_recovers() -> None:
    rule = ValenceTrend(id="souring", channels=("customer",), window_s=60,
                        max_slope_per_min=-0.5, min_utterances=3)
    f = Feed(rule)
    assert f.say("customer", "neutral", t=0.0, valence=0.6) == []
    assert f.say("customer", "neutral", t=10.0, valence=0.5) == []  # two points: too few
    assert f.say("agent", "sad", t=12.0, valence=-0.9) == []  # not the rule's party
    [alert] = f.say("customer", "sad", t=20.0, valence=0.1)  # slope -1.5/min
    assert alert["kind"] == "valence_trend" and alert["channel"] == "customer"
    assert alert["value"] == pytest.approx(-1.5)
    # The valence recovers: over the window the slope is positive again.
    [cleared] = f.say("customer", "happy", t=40.0, valence=0.7)
    assert cleared["type"] == "alert.cleared" and cleared["alert_id"] == alert["alert_id"]


def test_valence_trend_looks_only_at_the_window() -> None:
    rule = ValenceTrend(id="souring", window_s=20, max_slope_per_min=-0.5, min_utterances=3)
    f = Feed(rule)
    for t, v in ((0.0, 0.9), (10.0, 0.8), (100.0, 0.2), (110.0, 0.2)):
        f.say("customer", "neutral", t=t, valence=v)
    # Over all four points valence falls; within the last 20 s there are two points only.
    assert f.out == []
    f.say("customer", "neutral", t=115.0, valence=0.2)
    assert f.out == []  # three points in the window, flat
    f.say("customer", "neutral", t=30.0, valence=None)  # no valence: ignored by the trend
    assert f.out == []


def test_valence_trend_exact_slope() -> None:
    rule = ValenceTrend(id="souring", window_s=60, max_slope_per_min=-0.5, min_utterances=3)
    f = Feed(rule)
    # Points at t_end 2, 12, 22 with valence 0.5, 0.4, 0.3: slope -0.6/min.
    f.say("customer", "neutral", t=0.0, valence=0.5)
    f.say("customer", "neutral", t=10.0, valence=0.4)
    [alert] = f.say("customer", "neutral", t=20.0, valence=0.3)
    assert alert["value"] == pytest.approx(-0.6)
    assert alert["utterance_ids"] == [f"call-1/customer/{i}" for i in range(3)]
    assert "-0.60/min" in alert["message"]


def test_both_parties_fires_only_while_the_latest_of_each_is_the_label() -> None:
    rule = BothParties(id="both-angry", label="angry", min_confidence=0.6, within_s=20)
    f = Feed(rule)
    assert f.say("customer", "angry", t=0.0) == []  # the agent has not spoken yet
    assert f.say("agent", "neutral", t=3.0) == []
    [alert] = f.say("agent", "angry", t=6.0)
    assert alert["channel"] == "call" and alert["kind"] == "both_parties"
    assert sorted(alert["utterance_ids"]) == ["call-1/agent/1", "call-1/customer/0"]
    [cleared] = f.say("customer", "neutral", t=9.0)
    assert cleared["type"] == "alert.cleared" and cleared["channel"] == "call"


def test_both_parties_needs_them_close_in_time_and_confident() -> None:
    rule = BothParties(id="both-angry", label="angry", min_confidence=0.6, within_s=20,
                       cooldown_s=0)
    f = Feed(rule)
    f.say("customer", "angry", t=0.0)
    assert f.say("agent", "angry", t=60.0) == []  # 60 s apart: not "at once"
    assert f.say("customer", "angry", 0.55, t=65.0) == []  # not confident enough
    assert f.say("customer", "angry", 0.65, t=66.0)[0]["type"] == "alert"


def test_silence_fires_after_min_s_without_speech_and_clears_on_speech() -> None:
    f = Feed(Silence(id="dead-air", min_s=20, severity="info"))
    assert f.tick(19.0) == []
    [alert] = f.tick(2.0)  # 21 s after the call started, nobody spoke
    assert alert["kind"] == "silence" and alert["channel"] == "call"
    assert alert["utterance_ids"] == [] and alert["value"] == pytest.approx(21.0)
    [cleared] = f.send(conv.partial("call-1", "agent", 0, 21.0, "hello", ""))  # speaking
    assert cleared["type"] == "alert.cleared"
    # End of speech counts from the event's wall time minus its latency (494 ms here).
    f.say("agent", "neutral")
    assert f.tick(19.0) == []
    assert f.tick(0.6) == []  # silent for 20.1 s, but 22.6 s after the clear (cooldown_s 60)
    assert f.tick(40.0)[0]["type"] == "alert"


def test_silence_measures_from_the_end_of_speech() -> None:
    f = Feed(Silence(id="dead-air", min_s=10, cooldown_s=0))
    f.say("customer", "neutral")  # at wall 1000, published 494 ms after its end of speech
    assert f.tick(9.4) == []  # 9.4 s + the event's 0.494 s latency: 9.894 s
    assert f.tick(0.2)[0]["value"] == pytest.approx(10.094)
    f.say("customer", "unknown", speech=False)  # noise is not speech: still silent
    assert f.types() == ["alert"]


def test_call_end_clears_its_alerts_and_forgets_the_call() -> None:
    f = Feed(ANGRY_2_OF_3, Silence(id="dead-air", min_s=5))
    f.say("customer", "angry")
    f.say("customer", "angry")
    assert f.send(conv.ended("call-1", "agent")) == []  # one party still on the call
    [cleared] = f.send(conv.ended("call-1", "customer"))
    assert cleared["reason"] == "stream_ended"
    assert f.engine.calls == {} and f.engine.active == {}
    assert f.tick(100.0) == []  # an ended call is never silent


def test_reload_clears_alerts_of_removed_and_changed_rules() -> None:
    keep = Silence(id="dead-air", min_s=5)
    f = Feed(ANGRY_2_OF_3, keep, BothParties(id="both", label="angry", min_confidence=0.1))
    f.say("customer", "angry")
    f.say("agent", "angry")
    f.say("customer", "angry")
    f.tick(6.0)
    assert sorted(e["rule_id"] for e in f.out if e["type"] == "alert") == [
        "both", "customer-angry", "dead-air"]
    changed = LabelCount(id="customer-angry", channels=("customer",), k=3, n=3)
    got = f.engine.set_rules([changed, keep], f.now)
    assert sorted((e["rule_id"], e["reason"]) for e in got) == [
        ("both", "rule_removed"), ("customer-angry", "rule_changed")]
    assert [a.rule.id for a in f.engine.active.values()] == ["dead-air"]


def test_rules_from_config_and_malformed_rules_are_named(tmp_path: Path) -> None:
    config = load_config(None, [
        "alerts.rules=[{id: customer-angry, kind: label_count, channels: [customer], "
        "label: angry, min_confidence: 0.7, k: 2, n: 3, severity: critical, cooldown_s: 120},"
        "{id: dead-air, kind: silence, min_s: 30}]"])
    rules = load_rules(config.alerts.rules, config.alerts.rules_file)
    assert rules == (LabelCount(id="customer-angry", channels=("customer",), label="angry",
                                min_confidence=0.7, k=2, n=3, severity="critical",
                                cooldown_s=120.0),
                     Silence(id="dead-air", min_s=30.0))
    bad = {
        "[{id: a, kind: label_count, k: 4, n: 3}]": "alert rule 'a' (alerts.rules[0]): k and n",
        "[{id: b, kind: shouting}]": "alert rule 'b' (alerts.rules[0]): kind 'shouting' is "
                                     "unknown; use one of label_count",
        "[{id: ok, kind: silence}, {kind: silence}]": "alert rule alerts.rules[1] needs an 'id'",
        "[{id: c, kind: silence, min_s: soon}]": "alert rule 'c' (alerts.rules[0]): config key "
                                                 "'min_s' = 'soon' is invalid: expected float",
        "[{id: d, kind: silence, minimum: 3}]": "alert rule 'd' (alerts.rules[0]): unknown "
                                                "config key 'minimum'",
        "[{id: e, kind: silence}, {id: e, kind: silence}]": "'e' (alerts.rules[1]): the id is "
                                                            "used by another rule",
        "[{id: f, kind: label_count, channels: customer}]": "expected a list of str",
        "[{id: g, kind: label_count, min_confidence: 70}]": "min_confidence must be 0..1",
        "[{id: h, kind: valence_trend, max_slope_per_min: 0.2}]": "must be < 0",
        "[{id: i, kind: both_parties, channels: [customer]}]": "at least two parties",
        "[{id: j, kind: label_count, severity: urgent}]": "expected one of 'info'",
        "[{id: 'a/b', kind: silence}]": "without '/'",
        "{id: k, kind: silence}": "alerts.rules must be a list of rule mappings",
        "[silence]": "alert rule alerts.rules[0] must be a mapping",
    }
    for value, message in bad.items():
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"alerts.rules={value}"])
        assert message in str(info.value), (value, str(info.value))

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("- {id: dead-air, kind: silence, min_s: -1}\n")
    with pytest.raises(ConfigError, match=r"alert rule 'dead-air' \(.*rules.yaml\[0\]\): "
                                          "min_s must be > 0"):
        load_config(None, [f"alerts.rules_file={rules_file}"])
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, [f"alerts.rules_file={rules_file}",
                           "alerts.rules=[{id: x, kind: silence}]"])
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(None, [f"alerts.rules_file={tmp_path / 'missing.yaml'}"])
    rules_file.write_text("- {id: dead-air, kind: silence, min_s: 12}\n")
    assert load_rules(None, str(rules_file)) == (Silence(id="dead-air", min_s=12.0),)
    assert parse_rules(None) == ()
