"""The dashboard page in headless Chromium against the real server (no mocks).

A synthetic two-call conversation is published on the bus while the page is open; the
tests read what a person would see: stream list, timeline rows, labels, partials, plots.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from harness import conversation as conv
from tests.dashboard.conftest import screenshot_path

pytestmark = pytest.mark.slow

UNTRUSTED = '<img src=x onerror="window.pwned=1"><b>bold</b> & "quotes"'
# Console noise that is expected while the server is down or refuses the token.
CONNECTION_NOISE = ("WebSocket connection to", "Failed to load resource")


def stream_button(page: Page, stream: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.stream[data-stream-id="{stream}"]')


async def open_live(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")


async def shown_labels(page: Page) -> list[str]:
    rows = page.locator("#timeline .utt")
    return list(await rows.evaluate_all("rows => rows.map(r => r.dataset.label)"))


def unexpected_errors(page: Page) -> list[str]:
    return [e for e in page.errors if not any(noise in e for noise in CONNECTION_NOISE)]  # type: ignore[attr-defined]


async def test_live_conversation_partials_plots_and_stream_filter(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    server.publish(conv.started("call-billing", "customer"), conv.started("call-billing", "agent"))
    await open_live(page, server.url("/"))
    # Streams active before the page opened come from hello; later ones from stream.started.
    await expect(stream_button(page, "call-billing")).to_have_attribute("data-state", "live")
    server.publish(conv.started("call-support", "customer"), conv.started("call-support", "agent"))
    await expect(stream_button(page, "call-support")).to_be_visible()
    await expect(page.locator("#stream-title")).to_have_text("call-billing")
    await expect(page.locator("#channels .channel-chip")).to_have_text(["customer", "agent"])

    # A partial transcript while the customer speaks, replaced by the final utterance.
    server.publish(conv.partial("call-billing", "customer", 0, 0.4, "I was charged twice for",
                                "I was charged"))
    partial = page.locator('#partials .partial[data-utterance-id="call-billing/customer/0"]')
    await expect(partial.locator(".stable")).to_have_text("I was charged")
    await expect(partial.locator(".tentative")).to_have_text(" twice for")

    rows = page.locator("#timeline .utt")
    for shown, row in enumerate(conv.BILLING_CALL, start=1):
        server.publish(conv.emotion_from_row(row))
        await expect(rows).to_have_count(shown)
        await expect(rows.last.locator(".text")).to_have_text(row[5])
        await expect(rows.last.locator(".label-chip")).to_have_text(row[6])
    await expect(partial).to_have_count(0)
    assert await shown_labels(page) == [row[6] for row in conv.BILLING_CALL]
    first = rows.first
    await expect(first.locator(".channel")).to_have_text("customer")
    await expect(first.locator(".confidence")).to_have_text("72% confident")
    await expect(first.locator('.prob[data-label="angry"] .value')).to_have_text("0.72")
    await expect(first.locator(".prob")).to_have_count(len(conv.LABELS))

    # The other call's events update its list entry, not the selected timeline.
    server.publish(*[conv.emotion_from_row(row) for row in conv.SUPPORT_CALL])
    await expect(stream_button(page, "call-support").locator(".stream-count")).to_have_text(
        "2 utt.")
    await expect(rows).to_have_count(len(conv.BILLING_CALL))

    # Plots: one line per class; valence/arousal shown because this call has them.
    await expect(page.locator("#prob-plot polyline.series")).to_have_count(len(conv.LABELS))
    await expect(page.locator("#prob-plot circle")).to_have_count(
        len(conv.LABELS) * len(conv.BILLING_CALL))
    await expect(page.locator("#dim-figure")).to_be_visible()
    await expect(page.locator("#dim-plot polyline.series")).to_have_count(2)
    server.publish(conv.partial("call-billing", "agent", 2, 17.5, "You're welcome, is there",
                                "You're welcome,"))
    await expect(page.locator("#partials .partial")).to_have_count(1)
    await page.screenshot(path=screenshot_path("conversation.png"), full_page=True)

    # Filter by stream.
    await stream_button(page, "call-support").click()
    await expect(page.locator("#stream-title")).to_have_text("call-support")
    await expect(rows).to_have_count(len(conv.SUPPORT_CALL))
    assert await shown_labels(page) == [row[6] for row in conv.SUPPORT_CALL]
    await expect(page.locator("#partials .partial")).to_have_count(0)
    await expect(page.locator("#dim-figure")).to_be_hidden()
    assert page.url.endswith("#stream=call-support")

    # Filter by channel within the stream.
    await page.locator('#channels .channel-chip[data-channel="agent"]').click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-channel", "customer")
    await page.locator('#channels .channel-chip[data-channel="agent"]').click()
    await expect(rows).to_have_count(2)

    # Transcripts are untrusted: shown as text, never parsed as HTML.
    server.publish(conv.emotion("call-support", "customer", 1, 6.5, 8.0, UNTRUSTED, "sad",
                                speaker="S2"))
    await expect(rows.last.locator(".text")).to_have_text(UNTRUSTED)
    # speakers.enabled: the speaker label beside the channel; none without it
    await expect(rows.last.locator(".speaker")).to_have_text("S2")
    await expect(rows.first.locator(".speaker")).to_have_count(0)
    assert await page.locator("#timeline img, #timeline b").count() == 0
    assert await page.evaluate("window.pwned") is None

    # A stream that ends stays listed, marked as ended.
    server.publish(conv.ended("call-support", "customer"), conv.ended("call-support", "agent"))
    await expect(stream_button(page, "call-support")).to_have_attribute("data-state", "ended")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_reconnects_after_the_server_restarts_on_the_same_port(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    server.publish(conv.started("call-billing", "customer"))
    await open_live(page, server.url("/dashboard"))
    server.publish(conv.emotion_from_row(conv.BILLING_CALL[2]))
    rows = page.locator("#timeline .utt")
    await expect(rows).to_have_count(1)

    await server.stop()
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "closed")
    await expect(page.locator("#status-text")).to_contain_text("retrying")
    server.bus = type(server.bus)()
    await server.start()
    server.publish(conv.started("call-new", "agent"))  # before the page is back: via hello

    await expect(status).to_have_attribute("data-state", "open", timeout=15000)
    await expect(stream_button(page, "call-new")).to_have_attribute("data-state", "live")
    # The new server's hello no longer lists the old call: it ended while we were away.
    await expect(stream_button(page, "call-billing")).to_have_attribute("data-state", "ended")

    # The same call again after the restart: its clock starts over, the history stays.
    server.publish(conv.started("call-billing", "customer"),
                   conv.emotion_from_row(conv.BILLING_CALL[0]))
    await expect(rows).to_have_count(2)
    await expect(page.locator("#timeline .divider")).to_have_text("stream restarted")
    await expect(rows.last.locator(".text")).to_have_text(conv.BILLING_CALL[0][5])
    await expect(stream_button(page, "call-billing")).to_have_attribute("data-state", "live")
    assert unexpected_errors(page) == []


async def test_token_from_the_page_url_authenticates_the_websocket(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(token="s3cret")
    server.publish(conv.started("call-billing", "customer"))

    await page.goto(server.url("/"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "unauthorized")
    await expect(page.locator("#status-text")).to_contain_text("token")
    await expect(page.locator("#streams li")).to_have_count(0)

    await page.goto(server.url("/", token="wrong"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "unauthorized")

    await open_live(page, server.url("/", token="s3cret"))
    await expect(stream_button(page, "call-billing")).to_be_visible()
    server.publish(conv.emotion_from_row(conv.BILLING_CALL[0]))
    await expect(page.locator("#timeline .utt .label-chip")).to_have_text(["angry"])
    assert unexpected_errors(page) == []


async def test_a_lagging_dashboard_is_told_and_keeps_the_newest(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    server.bus.default_queue_size = 5  # the page's subscriber queue holds 5 events
    await open_live(page, server.url("/"))
    # 41 events in one go, faster than the page can read them: the oldest are dropped.
    server.publish(conv.started("call-flood", "agent"))
    server.publish(*[conv.emotion("call-flood", "agent", i, i, i + 0.5, f"utterance {i}",
                                  "neutral") for i in range(40)])
    await expect(page.locator("#notice")).to_contain_text(re.compile(r"Missed \d+ events"))
    rows = page.locator("#timeline .utt")
    await expect(rows.last.locator(".text")).to_have_text("utterance 39")
    assert await rows.count() <= 5
