from pathlib import Path

import pytest
import yaml

from streamer.core.config import AppConfig, load_config, to_dict
from streamer.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_load_without_a_file() -> None:
    config = load_config()
    assert config == AppConfig()
    assert config.source.path == "builtin:sample"


def test_shipped_default_yaml_equals_builtin_defaults() -> None:
    assert load_config(REPO / "configs" / "default.yaml") == AppConfig()


def test_shipped_default_yaml_lists_every_key() -> None:
    """configs/default.yaml is the reference of every setting: each key of the built-in
    defaults is written there (equal values alone would pass with keys left out)."""
    def keys(tree: dict[str, object], prefix: str = "") -> set[str]:
        out = set()
        for key, value in tree.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= keys(value, f"{prefix}{key}.")
        return out

    shipped = keys(yaml.safe_load((REPO / "configs" / "default.yaml").read_text()))
    missing = sorted(keys(to_dict(AppConfig())) - shipped)
    assert not missing, f"configs/default.yaml lacks {missing}"


def test_yaml_values_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"segmenter": {"hangover_ms": 450}, "mqtt": {"port": 1999}}))
    config = load_config(path, ["mqtt.enabled=true", "emotion.max_wait_ms=3"])
    assert config.segmenter.hangover_ms == 450
    assert config.mqtt.port == 1999 and config.mqtt.enabled is True
    assert config.emotion.max_wait_ms == 3.0


def test_unknown_key_names_key_and_allowed_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("segmenter:\n  hangover: 300\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "segmenter.hangover" in message and "hangover_ms" in message


def test_unknown_section_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'segmentr'"):
        load_config(None, ["segmentr.frame_ms=20"])


def test_bad_literal_lists_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["segmenter.frame_ms=25"])
    assert "segmenter.frame_ms" in str(err.value) and "10, 20, 30" in str(err.value)


def test_bad_type_and_range() -> None:
    with pytest.raises(ConfigError, match="asr.beam_size"):
        load_config(None, ["asr.beam_size=two"])
    with pytest.raises(ConfigError, match="aggressiveness"):
        load_config(None, ["segmenter.aggressiveness=7"])
    with pytest.raises(ConfigError, match="must be >= 1"):
        load_config(None, ["segmenter.max_utterance_s=0.5"])
    with pytest.raises(ConfigError, match="asr.max_batch must be 1..64"):
        load_config(None, ["asr.max_batch=0"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("segmenter: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_round_trip_through_dict() -> None:
    config = load_config(None, ["websocket.token=secret-token"])
    data = to_dict(config)
    assert data["websocket"]["token"] == "secret-token"


def test_telephone_channels_get_the_speaker_thresholds_fitted_at_8khz() -> None:
    """speakers.telephone_* replace the wideband thresholds on telephone-band channels only;
    null keeps the wideband value; a value outside [-1, 1] says which key and what is
    allowed."""
    config = load_config(None, ["speakers.change_threshold=0.2",
                                "speakers.telephone_change_threshold=0.35",
                                "speakers.telephone_label_threshold=null"]).speakers
    wide, phone = config.for_band("wideband"), config.for_band("telephone")
    assert wide == config
    assert (phone.change_threshold, phone.scan_threshold, phone.label_threshold) == (
        0.35, config.telephone_scan_threshold, config.label_threshold)
    shipped = load_config(None).speakers  # the 8 kHz fit differs from the wideband one
    assert shipped.for_band("telephone").change_threshold > shipped.change_threshold
    with pytest.raises(ConfigError, match=r"telephone_scan_threshold must be a cosine in "
                                          r"\[-1, 1\] or null"):
        load_config(None, ["speakers.telephone_scan_threshold=1.5"])
