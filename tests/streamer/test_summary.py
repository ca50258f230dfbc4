"""Per-call summaries (sans I/O): what they hold, when they are due, requests, the end."""

from __future__ import annotations

import pytest

from harness import conversation as conv
from streamer.core.alert_rules import LabelCount
from streamer.core.events import validate_event
from streamer.supervise.alerts import AlertEngine
from streamer.supervise.summary import RECENT_VALUES, CallSummaries


def billing_call(summaries: CallSummaries, now: float = 100.0) -> None:
    summaries.feed(conv.started("call-billing", "customer"), now)
    summaries.feed(conv.started("call-billing", "agent"), now)
    for row in conv.BILLING_CALL:
        summaries.feed(conv.emotion_from_row(row), now)


def test_summary_holds_current_label_shares_trends_and_alerts() -> None:
    summaries = CallSummaries(interval_s=5.0, queue_pattern=r"^call-(?P<queue>[a-z]+)")
    billing_call(summaries)
    [summary] = summaries.due(100.0)
    validate_event(summary)
    assert summary["type"] == "call.summary" and summary["channel"] == "call"
    assert summary["stream_id"] == "call-billing" and summary["queue"] == "billing"
    assert summary["reason"] == "interval" and summary["active"] is True
    assert summary["t_end"] == 17.0 and summary["severity"] == "none"
    customer, agent = summary["parties"]["customer"], summary["parties"]["agent"]
    assert customer["label"] == "happy" and customer["confidence"] == 0.77  # the latest
    assert customer["utterances"] == 3 and agent["utterances"] == 2
    # Speech time: angry 3.5 + 2.7 s, happy 1.9 s of 8.1 s.
    assert customer["speech_s"] == pytest.approx(8.1)
    assert customer["share"] == {"angry": pytest.approx(6.2 / 8.1, abs=1e-4),
                                 "happy": pytest.approx(1.9 / 8.1, abs=1e-4)}
    assert agent["share"] == {"neutral": 1.0}
    assert customer["recent_labels"] == ["angry", "angry", "happy"]
    assert customer["valence"]["recent"] == [-0.6, -0.7, 0.8]
    assert customer["valence"]["last"] == 0.8
    assert customer["valence"]["slope_per_min"] > 0  # the call turned around
    assert customer["arousal"]["last"] == 0.6


def test_alert_state_and_severity_follow_alert_events() -> None:
    engine = AlertEngine([LabelCount(id="angry", channels=("customer",), k=2, n=3,
                                     min_confidence=0.6, severity="critical")])
    summaries = CallSummaries()
    for event in [conv.started("call-billing", "customer"),
                  *[conv.emotion_from_row(row) for row in conv.BILLING_CALL[:3]]]:
        for out in [event, *engine.feed(event, 100.0)]:
            summaries.feed(out, 100.0)
    [summary] = summaries.summaries()
    assert summary["severity"] == "critical" and summary["reason"] == "request"
    [alert] = summary["alerts"]
    assert alert["rule_id"] == "angry" and alert["channel"] == "customer"
    assert alert["since"] == 100.0
    summaries.feed({**engine.set_rules([], 101.0)[0]}, 101.0)
    assert summaries.summaries()[0]["alerts"] == []
    assert summaries.summaries()[0]["severity"] == "none"


def test_periodic_summaries_only_for_changed_calls_and_at_most_every_interval() -> None:
    summaries = CallSummaries(interval_s=5.0)
    billing_call(summaries)
    assert len(summaries.due(100.0)) == 1
    assert summaries.due(110.0) == []  # nothing changed since
    summaries.feed(conv.emotion("call-billing", "agent", 2, 18.0, 19.0, "bye", "neutral"), 111)
    assert len(summaries.due(111.0)) == 1  # 11 s after the last one
    summaries.feed(conv.emotion("call-billing", "agent", 3, 19.0, 20.0, "bye", "neutral"), 112)
    assert summaries.due(113.0) == []  # changed, but the last summary is 2 s old
    assert len(summaries.summaries(now=113.0)) == 1  # a request is answered at any time
    assert [s["reason"] for s in summaries.due(116.0)] == ["interval"]
    assert CallSummaries(interval_s=0).due(1e9) == []  # 0: only on request and at the end


def test_the_end_of_a_call_gives_a_final_summary_and_forgets_it() -> None:
    summaries = CallSummaries()
    billing_call(summaries)
    assert summaries.feed(conv.ended("call-billing", "agent"), 120.0) == []
    assert summaries.summaries()[0]["parties"]["agent"]["active"] is False
    [final] = summaries.feed(conv.ended("call-billing", "customer"), 121.0)
    validate_event(final)
    assert final["reason"] == "ended" and final["active"] is False
    assert final["parties"]["customer"]["utterances"] == 3
    assert summaries.calls == {} and summaries.summaries() == []
    assert summaries.feed(conv.ended("call-billing", "customer"), 122.0) == []


def test_requests_select_streams_and_state_stays_bounded() -> None:
    summaries = CallSummaries()
    billing_call(summaries)
    summaries.feed(conv.started("call-support", "customer"), 100.0)
    assert [s["stream_id"] for s in summaries.summaries({"call-support"})] == ["call-support"]
    assert len(summaries.summaries()) == 2
    for i in range(3 * RECENT_VALUES):
        summaries.feed(conv.emotion("call-support", "customer", i, i, i + 0.5, "word", "sad",
                                    valence=-i / 100, arousal=0.5), 100.0)
    [support] = summaries.summaries({"call-support"})
    validate_event(support)
    party = support["parties"]["customer"]
    assert len(party["valence"]["recent"]) == RECENT_VALUES
    assert party["valence"]["last"] == -0.89 and party["utterances"] == 3 * RECENT_VALUES
    assert party["valence"]["slope_per_min"] == pytest.approx(-0.6)  # -0.01 per second
    assert party["arousal"]["slope_per_min"] == 0.0
    nonspeech = {**conv.emotion("call-support", "customer", 999, 95.0, 96.0, "", "unknown"),
                 "speech": False}
    summaries.feed(nonspeech, 100.0)
    party = summaries.summaries({"call-support"})[0]["parties"]["customer"]
    assert party["label"] == "sad" and party["utterances"] == 3 * RECENT_VALUES + 1


def test_a_call_where_nobody_spoke_has_no_periodic_or_final_summary() -> None:
    summaries = CallSummaries()
    summaries.feed(conv.started("call-quiet", "customer"), 100.0)
    summaries.feed(conv.emotion("call-quiet", "customer", 0, 1.0, 2.0, "", "unknown"), 100.0)
    assert len(summaries.due(200.0)) == 1  # a non-speech utterance still counts as heard
    summaries = CallSummaries()
    summaries.feed(conv.started("call-silent", "customer"), 100.0)
    assert summaries.due(200.0) == []
    assert [s["stream_id"] for s in summaries.summaries()] == ["call-silent"]
    assert summaries.feed(conv.ended("call-silent", "customer"), 201.0) == []
