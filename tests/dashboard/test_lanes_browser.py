"""The call view's party lanes in headless Chromium against the real server (issue 33).

Customer and agent each get a lane on one time axis; every utterance is a box from its start
to its end, coloured by label and as opaque as the model is confident; alerts from the real
rule engine are drawn as spans on the lane of their party and stay after they clear.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from harness import conversation as conv
from streamer.core import events
from streamer.core.alert_rules import LabelCount
from streamer.core.events import Event
from streamer.supervise.alerts import AlertEngine
from tests.dashboard.conftest import screenshot_path

pytestmark = pytest.mark.slow

STREAM = "call-billing"
# After the billing call, the customer calms down: two neutral turns end the alert.
CALM_DOWN = [
    (STREAM, "customer", 3, 18.0, 20.0, "Okay, that sounds fine.", "neutral", 0.8, None, None),
    (STREAM, "customer", 4, 21.0, 23.5, "Thanks for sorting it out.", "neutral", 0.9, None, None),
]


def in_lane(page: Page, channel: str, kind: str = "lane-utt"):  # type: ignore[no-untyped-def]
    """The utterance boxes (or ``alert-span`` rects) on ``channel``'s lane."""
    return page.locator(f'#lanes-plot .lane[data-channel="{channel}"] rect.{kind}')


async def lane_boxes(page: Page, channel: str) -> list[dict[str, float | str]]:
    boxes = in_lane(page, channel)
    return list(await boxes.evaluate_all(
        """rects => rects.map(r => ({x: Number(r.getAttribute('x')),
            w: Number(r.getAttribute('width')), label: r.dataset.label,
            opacity: Number(r.getAttribute('fill-opacity')), title: r.textContent}))"""))


async def test_lanes_place_each_party_on_one_time_axis_with_alert_spans(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    engine = AlertEngine([LabelCount(id="angry-customer", label="angry", min_confidence=0.6,
                                     k=2, n=3, channels=("customer",))])
    alerts: list[Event] = []

    def publish(*events: Event) -> None:
        for event in events:
            server.publish(event)
            for alert in engine.feed(event, now=0.0):
                alerts.append(alert)
                server.publish(alert)

    publish(conv.started(STREAM, "customer"), conv.started(STREAM, "agent"))
    await page.goto(server.url("/"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    await expect(page.locator("#lanes-plot .empty")).to_have_text("no utterances yet")

    publish(*[conv.emotion_from_row(row) for row in conv.BILLING_CALL])
    lanes = page.locator("#lanes-plot .lane")
    await expect(lanes).to_have_count(2)
    assert await lanes.evaluate_all("ls => ls.map(l => l.dataset.channel)") == ["customer", "agent"]
    await expect(in_lane(page, "customer")).to_have_count(3)
    await expect(in_lane(page, "agent")).to_have_count(2)

    customer = await lane_boxes(page, "customer")
    agent = await lane_boxes(page, "agent")
    assert [b["label"] for b in customer] == ["angry", "angry", "happy"]
    assert [b["label"] for b in agent] == ["neutral", "neutral"]
    # One axis for both lanes: x is the same linear function of stream time in each.
    rows = {(row[1], row[2]): row for row in conv.BILLING_CALL}
    c0, c2 = rows[("customer", 0)], rows[("customer", 2)]
    scale = (float(customer[2]["x"]) - float(customer[0]["x"])) / (c2[3] - c0[3])
    for box, row in zip(agent, [rows[("agent", 0)], rows[("agent", 1)]], strict=True):
        expected_x = float(customer[0]["x"]) + scale * (row[3] - c0[3])
        assert abs(float(box["x"]) - expected_x) < 1.0
        assert abs(float(box["w"]) - scale * (row[4] - row[3])) < 1.0
    # More confident, more opaque: 0.81 (agent 0) vs 0.58 (agent 1).
    assert float(agent[0]["opacity"]) > float(agent[1]["opacity"])
    assert "neutral 81% · agent" in str(agent[0]["title"])

    # The rule fired on the customer's second angry turn: a span on the customer lane only.
    assert [a["type"] for a in alerts] == ["alert"]
    span = page.locator("#lanes-plot rect.alert-span")
    await expect(span).to_have_count(1)
    await expect(span).to_have_attribute("data-state", "active")
    await expect(in_lane(page, "customer", "alert-span")).to_have_count(1)
    await expect(span).to_have_attribute("data-alert-id", str(alerts[0]["alert_id"]))

    publish(*[conv.emotion_from_row(row) for row in CALM_DOWN])
    assert [a["type"] for a in alerts] == ["alert", "alert.cleared"]
    await expect(span).to_have_attribute("data-state", "cleared")  # cleared, still drawn
    await expect(in_lane(page, "customer")).to_have_count(5)
    await page.screenshot(path=screenshot_path("lanes.png"), full_page=True)

    # The channel filter hides a lane; untrusted text only ever becomes text.
    await page.locator('#channels .channel-chip[data-channel="agent"]').click()
    await expect(lanes).to_have_count(1)
    untrusted = '<img src=x onerror="window.pwned=1">'
    server.publish(conv.emotion(STREAM, "customer", 5, 24.0, 25.0, untrusted, "sad"))
    await expect(in_lane(page, "customer")).to_have_count(6)
    assert await page.locator("#lanes-plot img").count() == 0
    assert await page.evaluate("window.pwned") is None
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_speaker_revision_relabels_the_shown_utterances(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    server.publish(conv.started("mono-call", "mono"))
    await page.goto(server.url("/"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    server.publish(conv.emotion("mono-call", "mono", 0, 0.5, 2.0, "Hello there.", "neutral",
                                speaker="S1"),
                   conv.emotion("mono-call", "mono", 1, 2.5, 4.0, "Hi, how are you?", "happy",
                                speaker="S1"))
    speakers = page.locator("#timeline .utt .speaker")
    await expect(speakers).to_have_text(["S1", "S1"])
    # The second utterance was another voice: the streamer revises it.
    server.publish(conv.checked(events.speaker_revised("mono-call", "mono", [(1, "S1", "S2")])))
    await expect(speakers).to_have_text(["S1", "S2"])
    second = page.locator('#lanes-plot rect.lane-utt[data-utterance-id="mono-call/mono/1"]')
    await expect(second.locator("title")).to_contain_text("mono (S2)")
    assert page.errors == []  # type: ignore[attr-defined]
