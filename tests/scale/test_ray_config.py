"""Building the Ray Serve application from configuration (no cluster needed)."""

from __future__ import annotations

import pytest

from streamer.core.config import load_config
from streamer.core.errors import ConfigError
from streamer.scale.ray_app import app_from_args, build_app, replica_config


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


def test_direct_ingest_needs_a_fixed_port_and_replica_count() -> None:
    """Calls on the replicas' own port bypass Serve's proxy, so Serve cannot autoscale on
    them, and every replica must share one port."""
    with pytest.raises(ConfigError, match="ray.direct_ingest.*ray.ingest_max_replicas=null"):
        load_config(None, ["ray.direct_ingest=true", "ray.ingest_max_replicas=4"])
    with pytest.raises(ConfigError, match="ray.direct_ingest.*ingest.port"):
        build_app(load_config(None, ["mqtt.enabled=true", "ray.direct_ingest=true",
                                     "ingest.port=0"]))
    assert build_app(load_config(None, ["mqtt.enabled=true", "ray.direct_ingest=true",
                                        "ray.ingest_replicas=2"])) is not None
