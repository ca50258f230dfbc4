"""Property-based fuzzing of the config loader: any file, any ``--set``, a documented outcome.

Whatever the YAML document or the overrides, ``load_config`` returns a validated
``AppConfig`` or raises ``ConfigError`` with a message; never another exception (a
traceback at start is what issue 30 found for deep nesting and out-of-range numbers).
Values that name files or variables (``file:``, ``env:``) are left out: they read the
machine, which is not what is fuzzed here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.core.config import AppConfig, load_config
from streamer.core.errors import ConfigError


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += dotted_keys(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


KEYS = sorted(dotted_keys(dataclasses.asdict(AppConfig())))
SECTIONS = sorted({key.split(".")[0] for key in KEYS})

# Plain values a user might type, and some that are not plain at all.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30).filter(lambda s: not s.lstrip().startswith(("file:", "env:"))),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def outcome(path: Path | None, overrides: list[str]) -> None:
    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say what was wrong"
        return
    assert isinstance(config, AppConfig)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_any_override_of_a_real_key_is_taken_or_refused_clearly(
        pairs: list[tuple[str, Any]]) -> None:
    overrides = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                 for key, value in pairs]
    outcome(None, [o.replace("\n", " ") for o in overrides])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=40).filter(
    lambda s: "file:" not in s and "env:" not in s), max_size=3))
def test_any_override_text_is_taken_or_refused_clearly(overrides: list[str]) -> None:
    outcome(None, overrides)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(
    VALUES,
    st.dictionaries(st.sampled_from(SECTIONS),
                    st.one_of(VALUES, st.dictionaries(
                        st.sampled_from(sorted({k.split(".")[-1] for k in KEYS})), VALUES,
                        max_size=4)),
                    max_size=4)))
def test_any_yaml_document_is_loaded_or_refused_clearly(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    outcome(path, [])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_as_a_config_file_are_refused_clearly(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    outcome(path, [])


def test_files_that_are_not_utf8_are_refused_clearly(tmp_path: Path) -> None:
    """Found by the fuzz above: bytes that are not UTF-8 gave a UnicodeDecodeError
    traceback, in the config file and likewise in a rules file and a secret's file."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x80\xff rules")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(binary)
    with pytest.raises(ConfigError, match="rules_file .* is not UTF-8 text"):
        load_config(None, [f"alerts.rules_file={binary}"])
    with pytest.raises(ConfigError, match="the file is not UTF-8 text"):
        load_config(None, [f"websocket.token=file:{binary}"])
