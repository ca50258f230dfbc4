"""Prometheus metrics of one service instance (``GET /metrics``; docs/operations.md).

``ServiceMetrics`` owns a private ``CollectorRegistry`` (never prometheus-client's global
default), so several services in one process, and tests, do not collide. Two kinds:

- Counted as it happens (the per-utterance hot path): ``observe_event`` runs on every
  event the bus publishes and only looks at ``utterance.emotion`` (utterances, abstained,
  latency histograms from the event's own ``latency`` fields, no second measurement) and
  ``stream.ended`` (channels ended, by reason). Label children are bound once; an
  observation is a dict lookup and prometheus-client's per-metric lock, no per-frame work.
- Read at scrape time from the counters the components already keep (``ServiceCollector``:
  calls, connections, refusals, publisher deliveries and drops, queue depths, subscribers),
  so nothing is counted twice and the hot path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Enum, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from streamer.core.events import Event

if TYPE_CHECKING:  # only for annotations: the collector reads these objects' counters
    from streamer.ingest.server import IngestServer
    from streamer.runtime import Runtime

PREFIX = "emotion_stream"
MODEL_STATES = ("loading", "warming", "ready")
# Seconds; the service's target is end of speech -> event under 1 s (p95).
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
                   10.0)
ABSTAIN_REASONS = ("invalid_audio", "too_quiet", "clipped", "no_speech", "no_words",
                   "repetitive_text")
END_REASONS = ("end_of_input", "client_closed", "error", "shutdown")
WS_SUBSCRIPTION = "ws:"  # bus subscription names of WebSocket subscribers (ws_server)


class ServiceMetrics:
    """The metrics of one service instance; ``exposition()`` is the ``/metrics`` body."""

    # The classic text format generate_latest writes; Prometheus 2 and 3 both read it.
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.utterances = Counter(
            f"{PREFIX}_utterances", "Utterances published (utterance.emotion events, speech "
            "or not)", registry=r)
        self.abstained = Counter(
            f"{PREFIX}_utterances_abstained", "Utterances published without an emotion claim "
            "(not usable speech), by abstain_reason", ["reason"], registry=r)
        self.channels_ended = Counter(
            f"{PREFIX}_channels_ended", "Channels (call parties) ended, by stream.ended reason",
            ["reason"], registry=r)
        self.end_to_event = Histogram(
            f"{PREFIX}_end_of_speech_to_event_seconds", "End of speech to the published "
            "utterance.emotion event (latency.total_ms)", buckets=LATENCY_BUCKETS, registry=r)
        self.asr = Histogram(
            f"{PREFIX}_asr_seconds", "ASR time left after the end of speech (latency.asr_ms), "
            "speech utterances", buckets=LATENCY_BUCKETS, registry=r)
        self.fusion = Histogram(
            f"{PREFIX}_fusion_seconds", "Emotion model (fusion) run time (latency.fusion_ms), "
            "speech utterances", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds", "Time an utterance waited in queues (for the "
            "recognizer and for a fusion batch; latency.queue_ms)", buckets=LATENCY_BUCKETS,
            registry=r)
        self.drain_cut = Counter(
            f"{PREFIX}_drain_cut_calls", "Calls still in progress at the drain deadline "
            "(ended with reason shutdown)", registry=r)
        self.models = Enum(f"{PREFIX}_models", "Model state: loading, warming (one dummy "
                           "utterance) or ready", states=list(MODEL_STATES), registry=r)
        self.model_info = Info(f"{PREFIX}_model", "The loaded models", registry=r)
        # Bound once: the hot path does not look label values up.
        self._abstained = {reason: self.abstained.labels(reason) for reason in ABSTAIN_REASONS}
        self._ended = {reason: self.channels_ended.labels(reason) for reason in END_REASONS}

    def observe_event(self, event: Event) -> None:
        """Count one published event (an ``EventBus`` observer)."""
        kind = event.get("type")
        if kind == "utterance.emotion":
            self.utterances.inc()
            latency = event.get("latency") or {}
            self.end_to_event.observe(latency.get("total_ms", 0.0) / 1000)
            self.queue_wait.observe(latency.get("queue_ms", 0.0) / 1000)
            if event.get("speech", True):
                self.asr.observe(latency.get("asr_ms", 0.0) / 1000)
                self.fusion.observe(latency.get("fusion_ms", 0.0) / 1000)
            else:
                reason = str(event.get("abstain_reason"))
                child = self._abstained.get(reason)
                (child or self.abstained.labels(reason)).inc()
        elif kind == "stream.ended":
            reason = str(event.get("reason"))
            (self._ended.get(reason) or self.channels_ended.labels(reason)).inc()

    def set_models(self, state: str, **info: str) -> None:
        self.models.state(state)
        if info:
            self.model_info.info(info)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def _family(kind: str, name: str, help_text: str, labels: tuple[str, ...],
            samples: list[Sample]) -> Metric:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    family = cls(f"{PREFIX}_{name}", help_text, labels=list(labels))
    for s in samples:
        family.add_metric([s.labels[k] for k in labels], s.value)
    return family


class ServiceCollector(Collector):
    """Scrape-time view of the service's own counters and queues (no hot-path cost).

    ``ready`` and ``draining`` are callables so the collector shows the state at scrape.
    """

    def __init__(self, ingest: IngestServer, runtime: Runtime,
                 ready: Callable[[], bool], draining: Callable[[], bool]) -> None:
        self.ingest = ingest
        self.runtime = runtime
        self.ready = ready
        self.draining = draining

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are not known before the first scrape; no clash checks

    def collect(self) -> Iterator[Metric]:
        ingest, runtime = self.ingest, self.runtime
        stats = ingest.stats
        yield _family("gauge", "ready", "1 when /readyz answers 200", (),
                      [Sample({}, float(self.ready()))])
        yield _family("gauge", "draining", "1 after SIGTERM, while calls are given time to end",
                      (), [Sample({}, float(self.draining()))])
        yield _family("gauge", "calls_active", "Calls in progress", (),
                      [Sample({}, len(ingest.calls))])
        yield _family("gauge", "calls_capacity", "Most concurrent calls (ingest.max_calls)", (),
                      [Sample({}, ingest.config.max_calls)])
        yield _family("gauge", "connections_active", "Open ingest connections, by protocol",
                      ("protocol",), [Sample({"protocol": p}, n)
                                      for p, n in sorted(ingest.by_protocol.items())])
        channels = sum(len(c) for c in runtime.bus.streams.channels.values())
        yield _family("gauge", "channels_active", "Channels (call parties) being recognized",
                      (), [Sample({}, channels)])
        for name, value, text in (
                ("calls_started", stats.calls_started, "Calls started"),
                ("calls_finished", stats.calls_finished, "Calls finished"),
                ("call_errors", stats.call_errors, "Calls ended by an unexpected error (1011)")):
            yield _family("counter", name, text, (), [Sample({}, value)])
        refused = [Sample({"listener": "ingest", "reason": r}, n)
                   for r, n in sorted(ingest.edge.refused.items())]
        server = runtime.server
        if server is not None:
            refused += [Sample({"listener": "subscribers", "reason": r}, n)
                        for r, n in sorted(server.edge.refused.items())]
        yield _family("counter", "refused_connections",
                      "Connections refused or closed before serving, by listener and reason "
                      "(the config key of the limit, auth, handshake_rate, bad_protocol, ...)",
                      ("listener", "reason"), refused)
        published, dropped, depth = self._publishers()
        yield _family("counter", "events_published", "Events delivered, by publisher",
                      ("publisher",), published)
        yield _family("counter", "events_dropped", "Events not delivered, by publisher and "
                      "reason (overflow: queue full, oldest dropped; dead_letter: the broker "
                      "refused it; fault: not encodable or not writable)",
                      ("publisher", "reason"), dropped)
        recognizer = runtime.recognizer
        for queue, stage in (("asr", recognizer.asr_worker), ("fusion", recognizer.emotion_worker)):
            depth.append(Sample({"queue": queue}, stage.queued))
        depth.append(Sample({"queue": "ingest_audio"},
                            sum(call.queued_chunks for call in list(ingest.calls.values()))))
        yield _family("gauge", "queue_depth", "Items waiting, by queue (asr/fusion: requests; "
                      "ingest_audio: audio chunks of all calls; others: events)", ("queue",),
                      depth)
        yield from self._subscribers()
        yield from self._mqtt()
        yield from self._alerts()

    def _publishers(self) -> tuple[list[Sample], list[Sample], list[Sample]]:
        publishers = self.runtime.publishers
        published: list[Sample] = []
        dropped: list[Sample] = []
        depth: list[Sample] = []
        if publishers is None:
            return published, dropped, depth
        # Bus subscriptions carry the queue and its overflow count of each publisher.
        subs = self.runtime.bus.subscriptions
        server, mqtt = publishers.server, publishers.mqtt
        if server is not None:
            open_subs = [s for s in subs if s.name.startswith(WS_SUBSCRIPTION)]
            published.append(Sample({"publisher": "websocket"}, server.events_sent))
            dropped += [Sample({"publisher": "websocket", "reason": "overflow"},
                               server.events_dropped + sum(s.dropped for s in open_subs)),
                        Sample({"publisher": "websocket", "reason": "fault"},
                               server.faults.count)]
            depth.append(Sample({"queue": "websocket"}, sum(s.qsize() for s in open_subs)))
        if mqtt is not None:
            published.append(Sample({"publisher": "mqtt"}, mqtt.sent))
            dropped += [Sample({"publisher": "mqtt", "reason": "overflow"}, mqtt.dropped),
                        Sample({"publisher": "mqtt", "reason": "dead_letter"},
                               mqtt.dead_lettered)]
            depth.append(Sample({"queue": "mqtt"}, mqtt.pending))
        by_name = {s.name: s for s in subs}
        for name, sink in publishers.sinks:
            published.append(Sample({"publisher": name}, sink.written))
            dropped.append(Sample({"publisher": name, "reason": "fault"}, sink.faults.count))
            sub = by_name.get(name)
            if sub is not None:
                dropped.append(Sample({"publisher": name, "reason": "overflow"}, sub.dropped))
                depth.append(Sample({"queue": name}, sub.qsize()))
        return published, dropped, depth

    def _subscribers(self) -> Iterator[Metric]:
        server = self.runtime.server
        if server is None:
            return
        yield _family("gauge", "subscribers_active", "WebSocket /events subscribers", (),
                      [Sample({}, server.subscribers)])
        yield _family("counter", "subscriber_lagged_notices", "subscriber.lagged messages sent "
                      "(a slow subscriber lost its oldest events)", (),
                      [Sample({}, server.lagged_notices)])
        yield _family("counter", "subscribers_dropped", "Subscribers closed for taking no data "
                      "for websocket.send_timeout_s (1008)", (),
                      [Sample({}, server.dropped_subscribers)])

    def _mqtt(self) -> Iterator[Metric]:
        mqtt = self.runtime.mqtt
        if mqtt is None:
            return
        yield _family("gauge", "mqtt_connected", "1 while connected to the MQTT broker", (),
                      [Sample({}, float(mqtt.connected))])


    def _alerts(self) -> Iterator[Metric]:
        feed = self.runtime.feed
        if feed is None:
            return
        counts = feed.counts
        for name, counter, text in (
                ("alerts_fired", counts.fired, "Alerts fired, by rule"),
                ("alerts_cleared", counts.cleared, "Alerts cleared, by rule"),
                ("alerts_acknowledged", counts.acked, "Alert acknowledgements, by rule")):
            yield _family("counter", name, text, ("rule",),
                          [Sample({"rule": r}, n) for r, n in sorted(counter.items())])
        writer = feed.writer
        yield _family("counter", "alert_store_writes", "Rows written to the alert store, by "
                      "outcome (written; dropped: its queue was full; fault: the write failed)",
                      ("outcome",), [Sample({"outcome": "written"}, writer.written),
                                     Sample({"outcome": "dropped"}, writer.dropped),
                                     Sample({"outcome": "fault"}, writer.faults.count)])
        hooks = feed.webhooks
        if hooks is None:
            return
        endpoints = hooks.endpoints
        yield _family("counter", "webhook_events", "Webhook events by endpoint and outcome "
                      "(delivered; given_up: retries exhausted; rejected: a 4xx; dropped: "
                      "its queue was full)", ("endpoint", "outcome"),
                      [Sample({"endpoint": e.name, "outcome": outcome}, value)
                       for e in endpoints for outcome, value in (
                           ("delivered", e.delivered), ("given_up", e.given_up),
                           ("rejected", e.rejected), ("dropped", e.dropped))])
        yield _family("counter", "webhook_failed_attempts", "Webhook POSTs that failed "
                      "(retried or not)", ("endpoint",),
                      [Sample({"endpoint": e.name}, e.attempts_failed) for e in endpoints])
        yield _family("gauge", "webhook_up", "0 while an endpoint's last attempt failed",
                      ("endpoint",),
                      [Sample({"endpoint": e.name}, float(e.state != "failing"))
                       for e in endpoints])
        yield _family("gauge", "webhook_queue_depth", "Events waiting for an endpoint",
                      ("endpoint",), [Sample({"endpoint": e.name}, len(e.queue))
                                      for e in endpoints])


__all__ = ["ServiceMetrics", "ServiceCollector", "LATENCY_BUCKETS", "MODEL_STATES"]
