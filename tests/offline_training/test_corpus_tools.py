"""The served-span cut and the telephone-band copies of a manifest, on espeak-ng speech
padded with silence (as acted corpora are)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.speech import Turn, espeak_available, synthesize
from models.audio import SAMPLE_RATE
from offline_training.corpora import speech_spans, speed, telephone
from streamer.audio.segmenter import Segmenter
from streamer.audio.telephony import TELEPHONY_RATE
from streamer.core.config import SegmenterConfig

pytestmark = pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")

LEAD_S, TAIL_S = 1.2, 1.0


@pytest.fixture(scope="module")
def padded_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    speech = synthesize(Turn("Kids are talking by the door."))
    audio = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), speech,
                            np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, audio, SAMPLE_RATE)
    return path, speech


def write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_span_is_what_the_segmenter_serves(padded_clip: tuple[Path, np.ndarray]) -> None:
    path, speech = padded_clip
    audio, _ = sf.read(path, dtype="float32")
    span = speech_spans.speech_span(audio, SegmenterConfig())
    assert span is not None and span.segments == 1
    # The leading and trailing silence is gone (but the pre-roll is kept) ...
    assert LEAD_S - 0.5 < span.start < LEAD_S
    assert span.end < LEAD_S + len(speech) / SAMPLE_RATE + 0.5
    # ... and the span is exactly the audio of the served utterance.
    segmenter = Segmenter(SegmenterConfig())
    served = [e for e in segmenter.push(audio) + segmenter.flush()
              if isinstance(e, speech_spans.Segment)][0]
    assert span.end - span.start == pytest.approx(len(served.audio) / SAMPLE_RATE, abs=2e-3)


def test_silence_has_no_span() -> None:
    assert speech_spans.speech_span(np.zeros(3 * SAMPLE_RATE, np.float32),
                                    SegmenterConfig()) is None


def test_cli_cuts_rows_and_keeps_silent_rows_whole(padded_clip: tuple[Path, np.ndarray],
                                                   tmp_path: Path) -> None:
    path, _ = padded_clip
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    # A row that is already a segment of its file is cut inside that segment.
    rows = [{"id": "a", "path": str(path), "label": "neutral", "speaker": "s1"},
            {"id": "b", "path": str(path), "label": "neutral", "speaker": "s1",
             "start": 0.5, "end": None},
            {"id": "c", "path": str(silent), "label": "neutral", "speaker": "s2"}]
    out = tmp_path / "spans.jsonl"
    speech_spans.main([str(write_manifest(tmp_path / "in.jsonl", rows)), "--out", str(out)])
    cut = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in cut] == ["a", "b", "c"]
    assert cut[0]["start"] > 0.7 and cut[0]["end"] < LEAD_S + 3.0
    assert cut[1]["start"] == pytest.approx(cut[0]["start"], abs=0.05)
    assert cut[2].get("start") is None and cut[2].get("end") is None


def test_telephone_copy_is_band_limited_mu_law(padded_clip: tuple[Path, np.ndarray],
                                               tmp_path: Path) -> None:
    path, _ = padded_clip
    rows = [{"id": "a", "path": str(path), "label": "angry", "speaker": "s1",
             "start": 1.0, "end": 2.5, "extra": {"corpus": "demo"}}]
    out = tmp_path / "tel.jsonl"
    telephone.main([str(write_manifest(tmp_path / "in.jsonl", rows)), "--audio-dir",
                    str(tmp_path / "audio"), "--out", str(out), "--with-originals"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0] == rows[0]
    copy = written[1]
    assert copy["id"] == "a-tel" and copy["speaker"] == "s1" and copy["label"] == "angry"
    assert copy["extra"] == {"corpus": "demo-telephone", "source": str(path)}
    audio, rate = sf.read(copy["path"], dtype="float32")
    assert rate == TELEPHONY_RATE
    assert len(audio) == pytest.approx(1.5 * TELEPHONY_RATE, abs=2)
    # G.711 mu-law has 256 levels: the decoded copy takes at most that many values.
    assert len(np.unique(audio)) <= 256
    original, _ = sf.read(path, dtype="float32", start=SAMPLE_RATE, stop=int(2.5 * SAMPLE_RATE))
    assert np.corrcoef(audio, original[::2][: len(audio)])[0, 1] > 0.5


def test_speed_copies_are_faster_or_slower_and_training_only(
        padded_clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = padded_clip
    rows = [{"id": "a", "path": str(path), "label": "angry", "speaker": "s1",
             "start": 1.0, "end": 2.5}]
    out = tmp_path / "speed.jsonl"
    speed.main([str(write_manifest(tmp_path / "in.jsonl", rows)), "--audio-dir",
                str(tmp_path / "audio"), "--out", str(out), "--with-originals"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0] == rows[0] and [r["id"] for r in written[1:]] == ["a-sp0.9", "a-sp1.1"]
    for copy, factor in zip(written[1:], (0.9, 1.1), strict=True):
        assert copy["speaker"] == "s1" and copy["label"] == "angry"
        assert copy["extra"] == {"augments": "a", "augmentation": f"speed {factor:g}",
                                 "source": str(path)}
        audio, rate = sf.read(copy["path"], dtype="float32")
        assert rate == SAMPLE_RATE
        assert len(audio) == pytest.approx(1.5 * SAMPLE_RATE / factor, abs=2)
    with pytest.raises(ValueError, match="outside"):
        speed.speed_perturb(np.zeros(100, np.float32), 3.0)
