"""Health endpoints of ``serve``: ``GET /healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz``: alive. 200 whenever the event loop answers (the ingest counters as JSON);
  for liveness probes: a process that stops answering is restarted.
- ``/readyz``: ready for calls. 200 only while the models are loaded and warmed, the
  server is not draining (SIGTERM), it is below its call capacity (``ingest.max_calls``
  connections) and, with MQTT on, the broker is connected; else 503 with
  ``{"ready": false, "reasons": {code: message}}``. For readiness probes and load
  balancers: a 503 takes the instance out of rotation without restarting it.
  The body also carries ``webhooks``: each endpoint's state (``ok``, ``failing`` with its
  last error, ``idle``) as details; a failing webhook does not make the service unready.
- ``/metrics``: the Prometheus text exposition of ``streamer.ops.metrics.ServiceMetrics``.

``readiness`` is the sans-I/O rule; ``Health`` holds the service's live state and serves
the routes on any ``HttpEdge`` (``operations.endpoints``: the ingest port, the subscriber
port, both or none). docs/operations.md has the metric names and probe examples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from websockets.http11 import Request, Response

from streamer.ops.metrics import ServiceCollector, ServiceMetrics
from streamer.publish.http_edge import HttpEdge, json_response, response

if TYPE_CHECKING:
    from streamer.ingest.server import IngestServer
    from streamer.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadinessInputs:
    """What readiness depends on, read from the live service."""

    models: str  # streamer.ops.metrics.MODEL_STATES
    draining: bool
    connections: int
    max_calls: int
    mqtt_enabled: bool
    mqtt_connected: bool
    mqtt_error: str | None = None
    # streamer.publish.mqtt_publisher states: connecting, connected, unreachable, auth_refused
    mqtt_state: str = "connecting"


def readiness(state: ReadinessInputs) -> dict[str, str]:
    """Why the service is not ready for calls ({} when it is): code -> message."""
    reasons: dict[str, str] = {}
    if state.draining:
        reasons["draining"] = ("shutting down: new calls are refused, calls in progress get "
                               "operations.drain_timeout_s to end")
    if state.models != "ready":
        reasons["models"] = f"models {state.models}"
    if state.connections >= state.max_calls:
        reasons["capacity"] = (f"at capacity: {state.connections} of {state.max_calls} calls "
                               "(ingest.max_calls)")
    if state.mqtt_enabled and not state.mqtt_connected:
        detail = state.mqtt_error or "connecting"
        if state.mqtt_state == "auth_refused":
            reasons["mqtt"] = (f"MQTT broker refused the credentials ({detail}): check "
                               "mqtt.username and mqtt.password")
        elif state.mqtt_state == "unreachable":
            reasons["mqtt"] = (f"MQTT broker unreachable ({detail}): it is down, restarting "
                               "or not at mqtt.host:mqtt.port; retrying with backoff")
        else:
            reasons["mqtt"] = f"MQTT broker not connected ({detail})"
    return reasons


class Health:
    """The service's health state and its three routes."""

    def __init__(self, ingest: IngestServer, mqtt_enabled: bool) -> None:
        self.ingest = ingest
        self.mqtt_enabled = mqtt_enabled
        self.metrics = ServiceMetrics()
        self.models = "loading"
        self.runtime: Runtime | None = None
        self.metrics.set_models(self.models)

    def set_models(self, state: str, **info: str) -> None:
        self.models = state
        self.metrics.set_models(state, **info)

    def attach(self, runtime: Runtime) -> None:
        """The runtime is up: count its events, expose its counters."""
        self.runtime = runtime
        runtime.bus.observers.append(self.metrics.observe_event)
        self.metrics.registry.register(ServiceCollector(
            self.ingest, runtime, ready=lambda: not self.reasons(),
            draining=lambda: self.ingest.draining))

    def add_routes(self, edge: HttpEdge) -> None:
        # Unauthenticated, as probes and scrapers are: the bodies hold counts and states,
        # no stream ids, names or secrets.
        edge.add_http("/healthz", self._healthz)
        edge.add_http("/readyz", self._readyz)
        edge.add_http("/metrics", self._metrics)

    def inputs(self) -> ReadinessInputs:
        mqtt = self.runtime.mqtt if self.runtime is not None else None
        return ReadinessInputs(
            models=self.models, draining=self.ingest.draining,
            connections=self.ingest.connections, max_calls=self.ingest.config.max_calls,
            mqtt_enabled=self.mqtt_enabled, mqtt_connected=mqtt is not None and mqtt.connected,
            mqtt_error=mqtt.last_error if mqtt is not None else None,
            mqtt_state=mqtt.state if mqtt is not None else "connecting")

    def reasons(self) -> dict[str, str]:
        return readiness(self.inputs())

    def _healthz(self, request: Request) -> Response:
        return json_response(HTTPStatus.OK, {"status": "alive", "models": self.models,
                                             **self.ingest.health()})

    def _readyz(self, request: Request) -> Response:
        reasons = self.reasons()
        status = HTTPStatus.SERVICE_UNAVAILABLE if reasons else HTTPStatus.OK
        mqtt = self.inputs().mqtt_state if self.mqtt_enabled else "off"
        body = {"ready": not reasons, "reasons": reasons, "mqtt": mqtt,
                "calls": len(self.ingest.calls), "max_calls": self.ingest.config.max_calls}
        feed = self.runtime.feed if self.runtime is not None else None
        if feed is not None and feed.webhooks is not None:
            # Details, not reasons: a dead webhook endpoint does not stop calls being served.
            body["webhooks"] = feed.webhooks.details()
        return json_response(status, body, [("Cache-Control", "no-store")])

    def _metrics(self, request: Request) -> Response:
        return response(HTTPStatus.OK, self.metrics.exposition(),
                        [("Content-Type", self.metrics.content_type)])


__all__ = ["Health", "ReadinessInputs", "readiness"]
