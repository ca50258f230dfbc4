"""Secrets from environment variables or files, never printed by ``config --show``."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.cli import main
from streamer.core.config import load_config
from streamer.core.errors import ConfigError


def test_secrets_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ES_TEST_MQTT_PASSWORD", "from-env-123")
    (tmp_path / "token").write_text("from-file-456\n")
    overrides = ["mqtt.password=env:ES_TEST_MQTT_PASSWORD",
                 f"ingest.token=file:{tmp_path / 'token'}", "websocket.token=plain-789"]
    config = load_config(None, overrides)
    assert config.mqtt.password == "from-env-123"
    assert config.ingest.token == "from-file-456"
    assert config.websocket.token == "plain-789"
    args = ["config", "--show"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "password: '***'" in shown and "token: '***'" in shown
    for secret in ("from-env-123", "from-file-456", "plain-789"):
        assert secret not in shown
    assert "twilio_auth_token: null" in shown  # unset secrets stay visibly unset


def test_missing_secret_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ES_TEST_UNSET_VARIABLE is not set"):
        load_config(None, ["mqtt.password=env:ES_TEST_UNSET_VARIABLE"])
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(None, [f"ingest.audiohook_api_key=file:{tmp_path / 'nope'}"])
