"""``emotion-stream serve --ray``: the service as a Ray Serve application (docs/scaling.md).

Three deployments, each scaled and placed by the ``ray`` config section:

- ``ingest`` (the ingress, behind Ray Serve's HTTP proxy): a FastAPI WebSocket route takes
  every call on the ``ingest.*_path`` routes (raw PCM, Twilio, AudioHook) and hands the
  connection, wrapped as ``streamer.scale.asgi.AsgiConnection``, to the same
  ``IngestServer`` handlers ``serve`` uses (handshake checks, protocol parsers, per-party
  ``CallSession``). Each replica runs the same ``streamer.runtime.Runtime`` as ``serve``
  (bus, ``Recognizer``, MQTT publisher), with ``RemoteStage``s instead of local workers,
  and publishes every event to the one MQTT broker; ``streamer.apps.gateway`` serves
  subscribers and the dashboard from there. A call lives on one replica for its whole
  length (one WebSocket = one ongoing request: ``max_ongoing_requests`` is
  ``ingest.max_calls``; autoscaling targets ``ray.ingest_target_calls``).
- ``asr``: Whisper (``AsrBatch``, as in ``serve``); requests from every ingest replica are
  batched with ``@serve.batch`` (``ray.asr_max_batch``, ``ray.asr_batch_wait_ms``).
- ``fusion``: ``EmotionModel.predict`` batched the same way (``emotion.max_batch``,
  ``emotion.max_wait_ms``).

CPU or GPU placement: ``ray.<deployment>_num_cpus`` / ``_num_gpus`` (with ``asr.device`` /
``emotion.device`` ``cuda``). The proxy runs ``LostReplicaClose`` (installed with the
environment variable ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=`` ``PROXY_CALLBACK``, set
where the head node starts): when the ingest replica
holding a call dies, the caller's WebSocket is closed with 1012 (service restart) and a
reason, instead of a bare disconnect; the gateway publishes the calls' ``stream.ended``
(``streamer.scale.presence``). Serve starts a replacement replica; new calls go to the
live replicas meanwhile.

Not carried over from ``serve``: the ingest server's own listener (the proxy listens:
``ray.http_host``/``ray.http_port``, TLS via Ray's ``ssl_*`` options), refusals are
close codes after the upgrade instead of HTTP statuses (the proxy has already accepted
the upgrade path): 1008 for authentication and bad requests, 1013 for capacity and rate
limits, each with the reason ``serve`` would give.

``ray.direct_ingest``: each ingest replica also opens that listener, on
``ingest.host:ingest.port`` with SO_REUSEPORT (the replicas of a node share it; a TCP load
balancer spreads calls over nodes). Calls there reach the replica without the proxy, which
relays each WebSocket message through Ray (the Ray path's CPU overhead, docs/scaling.md),
and get ``serve``'s HTTP refusals and TLS. Serve's proxy does not see them: each replica
reports them as a custom autoscaling metric and ``ingest_calls_policy`` adds them to the
proxied calls; a replica that dies drops its direct calls' connections (no 1012; the gateway
still ends them from the replica's presence), and ``__del__`` drains them when Serve stops
the replica.
"""

# No ``from __future__ import annotations``: FastAPI reads the WebSocket route's
# annotations through Serve's class-based view, where strings do not resolve.
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import ray
from fastapi import FastAPI, WebSocket
from ray import serve
from ray.serve.config import AutoscalingContext
from ray.serve.handle import DeploymentHandle
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.asr import Transcript
from models.inference import EmotionInput, EmotionPrediction
from streamer.core.config import AppConfig, load_config, to_dict
from streamer.core.errors import ConfigError
from streamer.core.typed_config import from_dict
from streamer.engine.batcher import Timed
from streamer.engine.loading import load_asr, load_asr_8k, load_emotion, warm_asr, warm_emotion
from streamer.engine.recognizer import AsrBatch, AsrRequest, ModelFacts
from streamer.ingest.protocol import CLOSE_POLICY
from streamer.ingest.server import CLOSE_TRY_AGAIN, IngestServer
from streamer.publish.http_edge import websocket_path
from streamer.runtime import Runtime
from streamer.scale.asgi import AsgiConnection, close_reason
from streamer.scale.presence import ReplicaPresence
from streamer.scale.stages import Arrived, BatchRunner, RemoteStage, handle_call

log = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012  # the replica holding the call was lost
READY_TIMEOUT_S = 120.0  # a call arriving at a replica still starting waits this long
LOST_REPLICA_REASON = "the ingest replica serving this call was lost; call again"
# Defined before the deployments: Serve pickles their classes as they are declared.
DIRECT_CALLS_METRIC = "direct_calls"  # ingest replicas' autoscaling report (direct calls)


# ----------------------------------------------------------------- inference
@serve.deployment(name="asr")
class AsrDeployment:
    """Whisper, batching the requests of every ingest replica; with ``asr.model_8k``, that
    model too, for the requests of 8 kHz channels (``AsrRequest.narrowband``)."""

    def __init__(self, config_data: dict[str, Any]) -> None:
        config = from_dict(AppConfig, config_data)
        _, engine = load_asr(config)
        asr_8k = load_asr_8k(config)
        self.window_s = engine.config.window_s
        self.batch = AsrBatch(engine, asr_8k)
        self.runner = BatchRunner("asr", self.batch)
        self.transcribe_batch.set_max_batch_size(config.ray.asr_max_batch)  # type: ignore[attr-defined]
        self.transcribe_batch.set_batch_wait_timeout_s(config.ray.asr_batch_wait_ms / 1000)  # type: ignore[attr-defined]
        if config.ingest.warmup:
            warm_asr(engine, asr_8k)

    def facts(self) -> tuple[float, bool]:
        """The encoder window (s) and whether ``asr.model_8k`` is loaded (``ModelFacts``)."""
        return self.window_s, self.batch.asr_8k is not None

    def narrowband_requests(self) -> int:
        """Requests this replica transcribed with ``asr.model_8k``."""
        return self.batch.narrowband_requests

    async def transcribe(self, request: AsrRequest, keep_frames: bool = True
                         ) -> Timed[Transcript]:
        """``keep_frames=False``: the encoder frames stay here (a fusion model that does not
        take them: 77 KB per second of speech not sent back)."""
        result: Timed[Transcript] = await self.transcribe_batch(
            Arrived(request, time.monotonic()))
        # asr.model_8k's frames are not the emotion model's (it encodes those itself).
        keep_frames = keep_frames and not (request.narrowband and self.batch.asr_8k)
        if keep_frames or result.value.encoder_frames is None:
            return result
        return dataclasses.replace(
            result, value=dataclasses.replace(result.value, encoder_frames=None))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def transcribe_batch(self, batch: list[Arrived[AsrRequest]]
                               ) -> list[Timed[Transcript]]:
        return await self.runner.run(batch)


@serve.deployment(name="fusion")
class FusionDeployment:
    """``EmotionModel.predict``, batching the utterances of every ingest replica."""

    def __init__(self, config_data: dict[str, Any]) -> None:
        config = from_dict(AppConfig, config_data)
        whisper, _ = load_asr(config)  # the audio frames when the ASR's are not passed
        self.emotion = load_emotion(config, whisper)
        self.runner = BatchRunner("fusion", self.emotion.predict)
        self.predict_batch.set_max_batch_size(config.emotion.max_batch)  # type: ignore[attr-defined]
        self.predict_batch.set_batch_wait_timeout_s(config.emotion.max_wait_ms / 1000)  # type: ignore[attr-defined]
        if config.ingest.warmup:
            warm_emotion(self.emotion)

    def facts(self) -> tuple[str, tuple[str, ...], bool]:
        """model_id, labels, uses_whisper_frames (``ModelFacts`` without the ASR window)."""
        return self.emotion.model_id, self.emotion.labels, self.emotion.uses_whisper_frames

    async def predict(self, item: EmotionInput) -> Timed[EmotionPrediction]:
        result: Timed[EmotionPrediction] = await self.predict_batch(
            Arrived(item, time.monotonic()))
        return result

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict_batch(self, batch: list[Arrived[EmotionInput]]
                            ) -> list[Timed[EmotionPrediction]]:
        return await self.runner.run(batch)


@dataclass
class RemoteInference:
    """``streamer.engine.recognizer.Inference`` on the ``asr`` and ``fusion`` deployments."""

    facts: ModelFacts
    asr_worker: RemoteStage[AsrRequest, Transcript]
    emotion_worker: RemoteStage[EmotionInput, EmotionPrediction]
    # No speculative audio pass: features would cross the network twice for it.
    audio_worker: None = None

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing runs here: the deployments do the work


async def remote_inference(asr: DeploymentHandle, fusion: DeploymentHandle) -> RemoteInference:
    model_id, labels, uses_frames = await fusion.facts.remote()
    window_s, narrowband_model = await asr.facts.remote()
    return RemoteInference(ModelFacts(model_id, tuple(labels), uses_frames, window_s,
                                      narrowband_model),
                           RemoteStage("asr", handle_call(asr.transcribe, uses_frames)),
                           RemoteStage("fusion", handle_call(fusion.predict)))


# -------------------------------------------------------------------- ingest
def replica_config(config: AppConfig, replica: str) -> AppConfig:
    """An ingest replica's config: events go to MQTT only (the gateway serves subscribers);
    its MQTT client id, if one is set, is made unique per replica."""
    mqtt = config.mqtt
    if mqtt.client_id is not None:
        mqtt = dataclasses.replace(mqtt, client_id=f"{mqtt.client_id}-{replica}")
    return dataclasses.replace(
        config, mqtt=mqtt,
        websocket=dataclasses.replace(config.websocket, enabled=False),
        stdout=dataclasses.replace(config.stdout, enabled=False),
        jsonl=dataclasses.replace(config.jsonl, path=None))


ingest_api = FastAPI(title="emotion-stream ingest")


def refusal_close_code(status: HTTPStatus) -> int:
    """The close code of a handshake refusal after the upgrade (see module doc)."""
    if status in (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS):
        return CLOSE_TRY_AGAIN
    return CLOSE_POLICY


@serve.deployment(name="ingest")
@serve.ingress(ingest_api)
class IngestDeployment:
    """Holds calls: the ingest routes of ``serve`` behind Ray Serve's proxy."""

    def __init__(self, config_data: dict[str, Any], asr: DeploymentHandle,
                 fusion: DeploymentHandle) -> None:
        self.replica = serve.get_replica_context().replica_id.to_full_id_str()
        self.config = replica_config(from_dict(AppConfig, config_data), self.replica)
        self._asr, self._fusion = asr, fusion
        self._ingest: IngestServer | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._proxied = 0  # calls in progress that came through Serve's proxy
        if self.config.ray.direct_ingest:  # its own listener opens now, not on a first call
            self._start()  # Serve constructs replicas on their event loop

    def _start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ingest")
        return self._task

    async def _run(self) -> None:
        inference = await remote_inference(self._asr, self._fusion)
        direct = self.config.ray.direct_ingest
        async with Runtime(self.config, inference) as runtime:
            # Its own listener (the edge) opens only with ray.direct_ingest.
            ingest = IngestServer(self.config.ingest, runtime.recognizer, reuse_port=direct)
            presence = ReplicaPresence(self.config.mqtt, self.replica, lambda: {
                stream_id: list(call.feeds) for stream_id, call in ingest.calls.items()})
            async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
                if direct:
                    await stack.enter_async_context(ingest)
                tg.create_task(presence.run(), name="presence")
                self._ingest = ingest
                self._ready.set()
                log.info("ingest replica %s ready%s", self.replica,
                         f"; direct calls on port {ingest.port}" if direct else "")
                await asyncio.Event().wait()

    async def __del__(self) -> None:
        """Serve calls this when it stops the replica (scale-down, redeploy), after the
        proxied calls ended or ``graceful_shutdown_timeout_s`` passed: direct calls get the
        same drain as in ``serve`` (no new calls, those in progress end or are cut)."""
        if self._ingest is not None and self.config.ray.direct_ingest:
            cut = await self._ingest.drain(self.config.operations.drain_timeout_s)
            log.info("ingest replica %s drained; calls cut: %s", self.replica, cut or "none")

    async def check_health(self) -> None:
        """Serve's health check: the replica's runtime must be running."""
        task = self._start()
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"ingest replica {self.replica}: its runtime stopped ({error!r})")

    def replica_name(self) -> str:
        return self.replica

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric (``ingest_calls_policy``): the calls this
        replica holds on its own port, which Serve's count of ongoing requests misses."""
        if self._ingest is None:
            return {DIRECT_CALLS_METRIC: 0.0}
        return {DIRECT_CALLS_METRIC: float(max(0, self._ingest.connections - self._proxied))}

    @ingest_api.websocket("/{path:path}")
    async def call(self, websocket: WebSocket, path: str) -> None:
        self._start()
        await websocket.accept()
        ws = AsgiConnection(websocket)
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self._ready.wait()
        except TimeoutError:
            await ws.close(CLOSE_TRY_AGAIN, "this ingest replica is still starting; retry")
            return
        assert self._ingest is not None and ws.request is not None
        route = self._ingest.routes.get(websocket_path("/" + path))
        if route is None:
            await ws.close(CLOSE_POLICY, close_reason(
                f"no ingest route at /{path}; routes: {', '.join(sorted(self._ingest.routes))}"))
            return
        refusal = route.admit(ws.remote_address[0], ws.request)
        if refusal is not None:
            log.warning("ingest replica: refused %s on /%s (%d): %s", ws.remote_address, path,
                        refusal.status.value, refusal.message)
            await ws.close(refusal_close_code(refusal.status),
                           close_reason(f"{refusal.status.value}: {refusal.message}"))
            return
        self._proxied += 1
        try:
            await route.handle(ws)
        finally:
            self._proxied -= 1


# --------------------------------------------------------------------- proxy
class LostReplicaClose:
    """ASGI middleware in Ray Serve's proxy: a WebSocket whose replica died (the app ends
    without closing it) is closed with 1012 and a reason, not dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        state = {"accepted": False, "closed": False}

        async def watch(message: Message) -> None:
            if message["type"] == "websocket.accept":
                state["accepted"] = True
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if state["accepted"] and not state["closed"]:
                await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART,
                            "reason": LOST_REPLICA_REASON})


def proxy_middlewares() -> list[Middleware]:
    """Ray Serve's proxy calls this (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(LostReplicaClose)]


PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "streamer.scale.ray_app.proxy_middlewares"
PREFER_LOCAL_ENV = "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"


# ---------------------------------------------------------------------- app
def ingest_calls_policy(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    """Serve's autoscaling policy for ingest replicas with ``ray.direct_ingest``: replicas
    for every call held, those through the proxy (Serve's count of ongoing requests) and
    those on the replicas' own port (their ``record_autoscaling_stats``), at
    ``target_ongoing_requests`` calls per replica. Serve applies the bounds and delays."""
    if ctx.config is None:  # Serve passes the deployment's autoscaling config
        raise ValueError("ingest_calls_policy needs the deployment's autoscaling_config")
    direct = (ctx.aggregated_metrics or {}).get(DIRECT_CALLS_METRIC, {})
    calls = ctx.total_num_requests + sum(direct.values())
    return calls / ctx.config.target_ongoing_requests, {}


# Serve imports the policy by this path in its controller.
INGEST_POLICY = f"{ingest_calls_policy.__module__}:{ingest_calls_policy.__qualname__}"


def _scaling(replicas: int, most: int | None, target: int,
             policy: str | None = None) -> dict[str, Any]:
    if most is None:
        return {"num_replicas": replicas}
    config: dict[str, Any] = {"min_replicas": replicas, "max_replicas": most,
                              "target_ongoing_requests": target}
    if policy is not None:
        config["policy"] = {"policy_function": policy}
    return {"autoscaling_config": config}


def build_app(config: AppConfig) -> Any:
    """The application (ingest -> asr, fusion); ``serve.run`` it."""
    if not config.mqtt.enabled:
        raise ConfigError("serve --ray publishes events over MQTT only (each replica to the "
                          "same broker): set mqtt.enabled=true and mqtt.host/mqtt.port; serve "
                          "subscribers with `emotion-stream gateway`")
    r = config.ray
    if r.direct_ingest and config.ingest.port == 0:
        raise ConfigError("ray.direct_ingest: the ingest replicas share ingest.port; set it "
                          "to a fixed port (0 would give each replica a different one)")
    data = to_dict(config)
    asr = AsrDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": r.asr_num_cpus, "num_gpus": r.asr_num_gpus},
        max_ongoing_requests=max(64, 4 * r.asr_max_batch),
        **_scaling(r.asr_replicas, r.asr_max_replicas, r.asr_target_requests)).bind(data)
    fusion = FusionDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": r.fusion_num_cpus, "num_gpus": r.fusion_num_gpus},
        max_ongoing_requests=max(64, 4 * config.emotion.max_batch),
        **_scaling(r.fusion_replicas, r.fusion_max_replicas, r.fusion_target_requests)
    ).bind(data)
    return IngestDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": r.ingest_num_cpus},
        max_ongoing_requests=config.ingest.max_calls,
        # A replica being stopped (scale-down, redeploy) lets its calls go on this long.
        graceful_shutdown_timeout_s=config.operations.drain_timeout_s,
        **_scaling(r.ingest_replicas, r.ingest_max_replicas, r.ingest_target_calls,
                   INGEST_POLICY if r.direct_ingest else None)
    ).bind(data, asr, fusion)


def app_from_args(args: dict[str, Any]) -> Any:
    """Serve's application builder (``import_path: streamer.scale.ray_app:app_from_args``
    in a Serve config or a KubeRay ``RayService``): ``args: {config: PATH}`` names the YAML
    configuration, ``args: {set: ["key=value", ...]}`` overrides it."""
    overrides = args.get("set", [])
    if not isinstance(overrides, list):
        raise ConfigError("the application's args.set must be a list of key=value strings")
    return build_app(load_config(args.get("config"), [str(o) for o in overrides]))


def start_serve(config: AppConfig) -> DeploymentHandle:
    """Connect to (or start) the Ray cluster, start Serve's proxy on ``ray.http_*``
    (``ray.proxy_location``) and deploy the application; returns once every replica is up.

    The proxy reads two environment variables when it starts, set here for a cluster this
    process starts and to be set where the head node starts otherwise (docs/scaling.md):
    ``PROXY_CALLBACK_ENV`` (``LostReplicaClose``) and, with one proxy, ``PREFER_LOCAL_ENV=0``
    (Serve's proxy otherwise routes to replicas on its own node first)."""
    # Read by the proxy process: set it where the head node starts (``ray start`` inherits
    # it; for a cluster started elsewhere see docs/scaling.md).
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    if config.ray.proxy_location == "HeadOnly":  # else every call would go to the head's
        os.environ.setdefault(PREFER_LOCAL_ENV, "0")  # own ingest replicas first
    if not ray.is_initialized():
        if config.ray.address is None:  # a local cluster, started here
            ray.init(include_dashboard=False, log_to_driver=config.log_level == "DEBUG")
        else:
            ray.init(address=config.ray.address, log_to_driver=config.log_level == "DEBUG")
    serve.start(proxy_location=config.ray.proxy_location, http_options={
        "host": config.ray.http_host, "port": config.ray.http_port})
    return serve.run(build_app(config), name=config.ray.app_name, route_prefix="/")


def run_ray(config: AppConfig) -> int:
    """``serve --ray``: deploy, then wait for SIGINT/SIGTERM and delete the application."""
    start_serve(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: stop.set())
    log.info("emotion-stream on Ray Serve: calls on ws://%s:%d%s, %s, %s; events on MQTT "
             "%s:%d (%s/#)", config.ray.http_host, config.ray.http_port, config.ingest.pcm_path,
             config.ingest.twilio_path, config.ingest.audiohook_path, config.mqtt.host,
             config.mqtt.port, config.mqtt.prefix)
    stop.wait()
    if config.ray.address is None:  # the cluster started here goes, and the app with it
        log.info("stopping the local Ray cluster")
        ray.shutdown()
        return 0
    # A signal from a terminal also reaches processes of a cluster started from it: do not
    # wait on Serve; the controller deletes the replicas (each drains for up to
    # graceful_shutdown_timeout_s).
    log.info("stopping: the application %s is being deleted", config.ray.app_name)
    serve.delete(config.ray.app_name, _blocking=False)
    return 0


__all__ = ["AsrDeployment", "FusionDeployment", "IngestDeployment", "LostReplicaClose",
           "RemoteInference", "app_from_args", "build_app", "replica_config", "run_ray",
           "start_serve"]
