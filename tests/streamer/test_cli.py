from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_help_explains_the_tool() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "emotion" in result.stdout and "run" in result.stdout
    run_help = run_cli("run", "--help")
    assert "--source" in run_help.stdout and "--set" in run_help.stdout


def test_unknown_key_exits_2_with_message() -> None:
    result = run_cli("config", "--set", "asr.beam=3")
    assert result.returncode == 2
    assert "unknown config key 'asr.beam'" in result.stderr and "beam_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_prints_effective_values() -> None:
    result = run_cli("config", "--show", "--set", "segmenter.hangover_ms=240")
    assert result.returncode == 0 and "hangover_ms: 240" in result.stdout


def test_missing_bundle_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("run", "--fast", "--set", f"emotion.bundle={tmp_path / 'none'}",
                     "--set", "websocket.enabled=false")
    assert result.returncode == 2
    assert "bundle" in result.stderr and "Traceback" not in result.stderr


def test_schema_command_prints_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0 and '"utterance.emotion"' in result.stdout


def test_channel_flags_become_source_settings() -> None:
    from streamer.cli import build_parser, source_overrides

    args = build_parser().parse_args(["run", "--source", "call.wav", "--channel-names",
                                      "agent,customer"])
    assert "source.channels=split" in source_overrides(args)
    assert 'source.channel_names="agent,customer"' in source_overrides(args)
    mixed = build_parser().parse_args(["run", "--channels", "mix"])
    assert source_overrides(mixed) == ["source.channels=mix"]
    replay = run_cli("replay", "--help")
    assert replay.returncode == 0 and "--protocol" in replay.stdout and "twilio" in replay.stdout
