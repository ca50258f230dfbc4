"""Building the Ray Serve application from configuration (no cluster needed)."""

from __future__ import annotations

from typing import Any

import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from streamer.core.config import AppConfig, load_config
from streamer.core.errors import ConfigError
from streamer.scale.ray_app import (
    DIRECT_CALLS_METRIC,
    INGEST_POLICY,
    app_from_args,
    build_app,
    ingest_calls_policy,
    replica_config,
)


def test_the_ray_path_needs_mqtt_and_says_so() -> None:
    with pytest.raises(ConfigError, match="mqtt.enabled=true"):
        build_app(load_config(None, []))


def test_bad_replica_counts_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match="ray.asr_max_replicas must be >= ray.asr_replicas"):
        load_config(None, ["ray.asr_replicas=3", "ray.asr_max_replicas=2"])


def test_builder_args_and_replica_config() -> None:
    app = app_from_args({"set": ["mqtt.enabled=true", "ray.ingest_max_replicas=4"]})
    assert app is not None
    with pytest.raises(ConfigError, match="args.set"):
        app_from_args({"set": "mqtt.enabled=true"})
    config = load_config(None, ["mqtt.enabled=true", "mqtt.client_id=es", "jsonl.path=x.jsonl"])
    one = replica_config(config, "r1")
    assert one.mqtt.client_id == "es-r1" and not one.websocket.enabled
    assert one.jsonl.path is None and not one.stdout.enabled


def test_direct_ingest_needs_a_fixed_port() -> None:
    """Every replica of a node shares ingest.port: 0 would give each its own."""
    with pytest.raises(ConfigError, match="ray.direct_ingest.*ingest.port"):
        build_app(load_config(None, ["mqtt.enabled=true", "ray.direct_ingest=true",
                                     "ingest.port=0"]))


def autoscaling(config: AppConfig) -> dict[str, Any]:
    """The ingest deployment's autoscaling config as Serve will read it."""
    app = build_app(config)
    settings = app._bound_deployment._deployment_config.autoscaling_config  # noqa: SLF001
    return settings.model_dump() if settings is not None else {}


def context(proxied: float, direct: dict[str, float], target: int) -> AutoscalingContext:
    return AutoscalingContext(
        deployment_id=DeploymentID("ingest", "emotion-stream"), deployment_name="ingest",
        app_name="emotion-stream", current_num_replicas=1, target_num_replicas=1,
        running_replicas=[], total_num_requests=proxied, total_queued_requests=0.0,
        aggregated_metrics={DIRECT_CALLS_METRIC: direct} if direct else {}, raw_metrics={},
        capacity_adjusted_min_replicas=1, capacity_adjusted_max_replicas=8,
        policy_state={}, last_scale_up_time=None, last_scale_down_time=None,
        current_time=None, config=AutoscalingConfig(target_ongoing_requests=target,
                                                    min_replicas=1, max_replicas=8))


def test_direct_calls_count_for_autoscaling() -> None:
    """With ray.direct_ingest the ingest replicas autoscale on every call they hold: Serve's
    count of proxied calls plus each replica's report of the calls on its own port."""
    direct = load_config(None, ["mqtt.enabled=true", "ray.direct_ingest=true",
                                "ray.ingest_max_replicas=4", "ray.ingest_target_calls=16"])
    assert autoscaling(direct)["policy"]["policy_function"] == INGEST_POLICY
    proxied = load_config(None, ["mqtt.enabled=true", "ray.ingest_max_replicas=4"])
    assert autoscaling(proxied)["policy"]["policy_function"] != INGEST_POLICY
    assert ingest_calls_policy(context(4, {"r1": 20.0, "r2": 8.0}, 16))[0] == 2.0  # 32 / 16
    assert ingest_calls_policy(context(0, {"r1": 40.0}, 16))[0] == 2.5  # Serve rounds up
    assert ingest_calls_policy(context(16, {}, 16))[0] == 1.0  # no report yet: proxied only
