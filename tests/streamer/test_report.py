"""``emotion-stream report`` (issue 33): review files for recorded calls, offline.

The pure parts (CSV, captions, alerts replayed in stream time, HTML) are tested on built
events; the command itself runs the real default model and ASR on the bundled recordings:
its labels must be those of ``run --fast`` on the same file, a stereo file with ``--roles``
gives one party per channel, and a broken file in a folder is named while the good one is
still reported.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.apps.report import (
    OUTPUTS,
    Utterance,
    build_summary,
    collect_inputs,
    csv_text,
    render,
    report_html,
    srt_text,
    timestamp,
    unique_names,
    utterances,
    vtt_text,
    with_alerts,
)
from streamer.cli import main
from streamer.core.alert_rules import parse_rules
from streamer.core.events import speaker_revised, validate_event

ASSETS = Path(str(resources.files("streamer") / "assets"))
SAMPLE = ASSETS / "sample_ravdess.flac"  # 8 acted clips, 4 speakers, 35 s
CONVERSATION = ASSETS / "sample_conversation.wav"  # espeak-ng call-center turns, 27 s
RATE = 16000

# ---------------------------------------------------------------- built events


def started(channel: str = "mono", wall: float = 1000.0) -> dict[str, Any]:
    return {"schema": "emotion-stream/4", "type": "stream.started", "stream_id": "c",
            "channel": channel, "wall_time": wall, "source": "file:x", "sample_rate": RATE,
            "model_id": "m", "labels": ["angry", "happy", "neutral", "sad"]}


def emotion(t0: float, t1: float, label: str, conf: float, text: str = "words",
            channel: str = "mono", index: int = 0, speech: bool = True) -> dict[str, Any]:
    return {"schema": "emotion-stream/4", "type": "utterance.emotion", "stream_id": "c",
            "channel": channel, "wall_time": 1000.0 + t1, "utterance_id": f"c/{channel}/{index}",
            "t_start": t0, "t_end": t1, "speaker": None, "text": text, "speech": speech,
            "label": label if speech else "unknown", "confidence": conf if speech else 0.0,
            "valence": None, "latency": {"vad_hangover_ms": 300.0, "total_ms": 2500.0}}


def ended(duration: float, channel: str = "mono") -> dict[str, Any]:
    return {"schema": "emotion-stream/4", "type": "stream.ended", "stream_id": "c",
            "channel": channel, "wall_time": 1000.0 + duration, "duration_s": duration,
            "utterances": 0, "reason": "end_of_input"}


def test_timestamps_for_vtt_and_srt() -> None:
    assert timestamp(62.345) == "00:01:02.345"
    assert timestamp(62.345, ",") == "00:01:02,345"
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3723.0004) == "01:02:03.000"
    assert timestamp(59.9996) == "00:01:00.000"  # rounds into the next minute cleanly


def test_csv_has_one_row_per_utterance_with_the_columns() -> None:
    utts = [Utterance(1.5, 3.25, "agent", None, 'Hi, "there"', "happy", 0.91234, True),
            Utterance(4.0, 5.0, "customer", "S1", "", "unknown", 0.0, False)]
    rows = list(csv.reader(io.StringIO(csv_text(utts))))
    assert rows[0] == ["start", "end", "party", "speaker", "text", "label", "confidence"]
    assert rows[1] == ["1.500", "3.250", "agent", "", 'Hi, "there"', "happy", "0.9123"]
    assert rows[2] == ["4.000", "5.000", "customer", "S1", "", "unknown", "0.0000"]


def test_csv_cells_never_start_a_spreadsheet_formula() -> None:
    hostile = ['=HYPERLINK("http://x","y")', "+1 555", "-2", "@SUM(A1)", "\tx"]
    utts = [Utterance(0.0, 1.0, "agent", None, text, "neutral", 0.5, True) for text in hostile]
    rows = list(csv.reader(io.StringIO(csv_text(utts))))[1:]
    assert [row[4] for row in rows] == ["'" + text for text in hostile]


def test_captions_carry_label_and_confidence() -> None:
    utts = [Utterance(62.345, 64.0, "agent", None, "I <can> help & more", "neutral", 0.5,
                      True),
            Utterance(65.0, 66.5, "customer", None, "this is  outrageous", "angry", 0.824,
                      True),
            Utterance(67.0, 68.0, "customer", None, "", "unknown", 0.0, False)]
    vtt = vtt_text(utts)
    assert vtt.startswith("WEBVTT\n\n1\n00:01:02.345 --> 00:01:04.000\n")
    assert "<v agent>[neutral 0.50] I &lt;can&gt; help &amp; more" in vtt  # cue text escaped
    assert "<v customer>[angry 0.82] this is outrageous" in vtt
    assert "00:01:07.000" not in vtt  # no cue for what was not speech
    srt = srt_text(utts)
    assert srt.startswith("1\n00:01:02,345 --> 00:01:04,000\nagent: [neutral 0.50] I <can>")
    assert "2\n00:01:05,000 --> 00:01:06,500\ncustomer: [angry 0.82] this is outrageous\n" in srt
    assert "3\n" not in srt
    mono = srt_text([Utterance(0.0, 1.0, "mono", None, "ok", "sad", 0.7, True)])
    assert mono == "1\n00:00:00,000 --> 00:00:01,000\n[sad 0.70] ok\n"  # one party: no name


def test_output_names_are_unique_and_safe() -> None:
    assert unique_names(["call", "call", "Call", "a/b#c", "..", ".hidden", "call-2"]) == \
        ["call", "call-2", "Call-3", "a_b_c", "call-4", "hidden", "call-2-2"]


def test_inputs_from_folders_files_and_bad_paths(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("b.wav", "a.flac", "notes.txt", ".hidden.wav"):
        (calls / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    other = tmp_path / "x" / "a.wav"
    other.parent.mkdir()
    other.write_bytes(b"x")
    inputs, problems = collect_inputs([str(calls), str(other), str(tmp_path / "empty"),
                                       str(tmp_path / "missing.wav")])
    assert [(i.path.name, i.name) for i in inputs] == [("a.flac", "a"), ("b.wav", "b"),
                                                       ("a.wav", "a-2")]
    assert [p.path for p in problems] == [str(tmp_path / "empty"),
                                          str(tmp_path / "missing.wav")]
    assert "holds no audio files" in problems[0].message
    assert "does not exist" in problems[1].message


def test_alerts_are_replayed_in_stream_time() -> None:
    rules = parse_rules([{"id": "angry", "kind": "label_count", "label": "angry",
                          "min_confidence": 0.7, "k": 2, "n": 3},
                         {"id": "quiet", "kind": "silence", "min_s": 30}])
    events = [started(), emotion(1, 3, "angry", 0.9, index=0),
              emotion(4, 6, "angry", 0.8, index=1), emotion(7, 9, "happy", 0.9, index=2),
              emotion(10, 12, "happy", 0.9, index=3),
              emotion(60, 62, "neutral", 0.9, index=4), ended(70.0)]
    timeline = with_alerts(events, rules)
    kinds = [(e["type"], e.get("rule_id"), e.get("reason")) for e in timeline
             if e["type"] in ("alert", "alert.cleared")]
    assert kinds == [("alert", "angry", None), ("alert.cleared", "angry", "condition_ended"),
                     ("alert", "quiet", None), ("alert.cleared", "quiet", "condition_ended")]
    summary = build_summary(timeline, "x.wav", rules)
    angry, quiet = summary["alerts"]
    # fired when the 2nd angry utterance's end was known (t_end + hangover), not after
    # the --fast run's queueing latency; cleared by the 4th utterance
    assert (angry["fired_at"], angry["t_start"], angry["t_end"]) == (6.3, 1.0, 12.3)
    # nobody spoke from 12 s: the silence fired 30 s later, on the stream's clock (a --fast
    # run takes a few seconds of wall time and would never see it), and cleared when speech
    # started again (live, the first partial), not when that utterance's event came
    assert quiet["fired_at"] == pytest.approx(42.0, abs=0.5)
    assert quiet["cleared_at"] == pytest.approx(60.0)
    assert summary["parties"]["mono"]["counts"] == {"angry": 2, "happy": 2, "neutral": 1}
    assert summary["parties"]["mono"]["share"]["angry"] == pytest.approx(4 / 10)
    assert timeline[-1]["type"] == "call.summary" and timeline[-1]["reason"] == "ended"


def test_html_is_self_contained_and_escaped() -> None:
    nasty = '<script>alert("x")</script> & <img src=http://e/x>'
    events = [started("agent"), started("cust<b>"),
              emotion(1, 3, "angry", 0.9, nasty, channel="agent", index=0),
              emotion(2, 5, "sad", 0.4, "fine", channel="cust<b>", index=0),
              emotion(6, 7, "unknown", 0.0, "", channel="agent", index=1, speech=False),
              ended(8, "agent"), ended(8, "cust<b>")]
    timeline = with_alerts(events, ())
    page = report_html(timeline, build_summary(timeline, "a<b>.wav", ()))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "cust&lt;b&gt;" in page and "a&lt;b&gt;.wav" in page
    # nothing fetched from elsewhere: no tag refers to another resource
    tags = re.findall(r"<[^>]*>", page.replace(' xmlns="http://www.w3.org/2000/svg"', ""))
    assert tags and not [t for t in tags if re.search(r"src=|href=|https?:|url\(", t)]
    assert "@import" not in page and "<link" not in page and "url(" not in page
    assert page.count("<svg") == 1 and "angry 0.90" in page
    outputs = render(timeline, "a.wav", ())
    assert tuple(outputs) == OUTPUTS
    assert [json.loads(line)["type"] for line in outputs["events.jsonl"].splitlines()] == \
        [e["type"] for e in timeline]


def test_utterances_are_in_time_order_across_parties() -> None:
    events = [emotion(5, 6, "sad", 0.5, channel="b"), emotion(1, 2, "happy", 0.5, channel="a")]
    assert [u.party for u in utterances(events)] == ["a", "b"]


def test_utterances_carry_their_speaker_as_last_revised() -> None:
    first, second, third = (emotion(i, i + 1, "neutral", 0.5, index=i) for i in range(3))
    first["speaker"], second["speaker"], third["speaker"] = "S1", "S1", "S2"
    revised = speaker_revised("c", "mono", [(0, "S1", "S2")])
    again = speaker_revised("c", "mono", [(0, "S2", "S1"), (1, "S1", "S2")])
    events = [first, second, revised, third, again]
    validate_event(revised)
    validate_event(again)
    assert [u.speaker for u in utterances(events)] == ["S1", "S2", "S2"]


# ---------------------------------------------------------------- the real pipeline


def read_outputs(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]],
                                        dict[str, Any]]:
    for name in OUTPUTS:
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader(io.StringIO((folder / "utterances.csv").read_text())))
    return events, rows, json.loads((folder / "summary.json").read_text())


def test_report_labels_equal_run_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--source", str(SAMPLE), "--fast",
         "--json", "--set", "websocket.enabled=false"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    live = [json.loads(line) for line in run.stdout.splitlines()]
    live = [e for e in live if e["type"] == "utterance.emotion"]
    assert len(live) == 8

    assert main(["report", str(SAMPLE), "--out", str(tmp_path / "out")]) == 0
    assert "8 utterances" in capsys.readouterr().out
    events, rows, summary = read_outputs(tmp_path / "out" / "sample_ravdess")
    finals = [e for e in events if e["type"] == "utterance.emotion"]
    view = [(e["t_start"], e["t_end"], e["text"], e["label"], e["confidence"]) for e in finals]
    assert view == [(e["t_start"], e["t_end"], e["text"], e["label"], e["confidence"])
                    for e in live]
    assert [(r["label"], float(r["confidence"])) for r in rows] == \
        [(e["label"], e["confidence"]) for e in live]
    # the model labels all 8 acted clips right (streamer/assets/sample_ravdess.json)
    truth = json.loads((ASSETS / "sample_ravdess.json").read_text())
    assert [r["label"] for r in rows] == [c["emotion"] for c in truth]
    mono = summary["parties"]["mono"]
    assert sum(mono["counts"].values()) == 8 and sum(mono["share"].values()) == \
        pytest.approx(1.0, abs=1e-3)
    assert summary["call_summary"]["parties"]["mono"]["utterances"] == 8
    vtt = (tmp_path / "out" / "sample_ravdess" / "captions.vtt").read_text()
    assert vtt.count(" --> ") == 8 and f"[{rows[1]['label']} " in vtt
    page = (tmp_path / "out" / "sample_ravdess" / "report.html").read_text()
    assert page.count("<rect") >= 8 and "<script" not in page


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Channel 0 (the agent): the synthetic greeting from 0.3 s; channel 1 (the
    customer): an acted angry clip from 6 s, when the agent is silent."""
    greeting, rate = sf.read(CONVERSATION, dtype="float32", stop=int(4.8 * RATE))
    angry, rate2 = sf.read(SAMPLE, dtype="float32", start=int(3.5 * RATE),
                           stop=int(7.8 * RATE))
    assert rate == rate2 == RATE
    audio = np.zeros((int(12 * RATE), 2), dtype=np.float32)
    audio[int(0.3 * RATE): int(0.3 * RATE) + len(greeting), 0] = greeting
    audio[6 * RATE: 6 * RATE + len(angry), 1] = angry
    path = tmp_path_factory.mktemp("stereo") / "call.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def test_report_stereo_with_roles(stereo_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["report", str(stereo_wav), "--out", str(out), "--roles", "agent,customer",
                ]) == 0
    events, rows, summary = read_outputs(out / "call")
    assert set(summary["parties"]) == {"agent", "customer"}
    assert {e["channel"] for e in events if e["type"] == "stream.started"} == \
        {"agent", "customer"}
    by_party = {r["party"]: r for r in rows}
    assert set(by_party) == {"agent", "customer"}
    assert float(by_party["agent"]["end"]) < 6.0 < float(by_party["customer"]["start"])
    assert "thank" in by_party["agent"]["text"].lower() or \
        "calling" in by_party["agent"]["text"].lower()
    assert by_party["customer"]["label"] == "angry"
    srt = (out / "call" / "captions.srt").read_text()
    assert "\nagent: [" in srt and "\ncustomer: [angry" in srt
    assert "<v customer>[angry" in (out / "call" / "captions.vtt").read_text()
    page = (out / "call" / "report.html").read_text()
    assert ">agent</text>" in page and ">customer</text>" in page
    assert summary["stream_id"] == "call"


def test_report_folder_with_a_broken_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    audio, _ = sf.read(SAMPLE, dtype="float32", stop=int(3.5 * RATE))  # the first clip
    sf.write(calls / "good.flac", audio, RATE)
    (calls / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(200))
    out = tmp_path / "out"
    assert main(["report", str(calls), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "broken.wav" in errors[0] and "ffmpeg" in errors[0]
    assert "Traceback" not in captured.err
    assert "1 reported, 1 failed" in captured.err
    _, rows, _ = read_outputs(out / "good")
    assert [r["label"] for r in rows] == ["neutral"]
    assert not (out / "broken").exists()


def test_report_empty_folder_is_an_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "holds no audio files" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "out").exists()  # no models loaded, nothing written


def test_report_roles_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(SAMPLE), "--out", str(tmp_path), "--roles", "a,a"]) == 2
    assert "twice" in capsys.readouterr().err
