"""Segmenter: synthetic signals through an energy detector (the state machine is what is
tested), and real espeak-ng speech through webrtcvad."""

from __future__ import annotations

import numpy as np
import pytest

from models.audio import SAMPLE_RATE
from streamer.audio.segmenter import Segmenter
from streamer.core.config import SegmenterConfig
from streamer.core.messages import SpeechProgress, SpeechStarted, Utterance


class EnergyDetector:
    """Voiced = RMS above a threshold: exact on synthetic tone/silence signals."""

    def is_speech(self, buf: bytes, sample_rate: int) -> bool:
        x = np.frombuffer(buf, dtype="<i2").astype(np.float32) / 32768
        return float(np.sqrt(np.mean(x**2))) > 0.01


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def run(signal: np.ndarray, config: SegmenterConfig, chunk: int = 1600) -> list:
    seg = Segmenter(config, EnergyDetector())
    events = []
    for i in range(0, len(signal), chunk):
        events += seg.push(signal[i : i + chunk])
    return events + seg.flush()


def utterances(events: list) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


CFG = SegmenterConfig(frame_ms=30, hangover_ms=300, preroll_ms=300, min_utterance_ms=250,
                      max_utterance_s=15.0, partial_interval_s=1.0)


def test_two_bursts_give_two_utterances_with_speech_times() -> None:
    signal = np.concatenate([silence(1.0), tone(2.0), silence(1.0), tone(1.5), silence(1.0)])
    utts = utterances(run(signal, CFG))
    assert len(utts) == 2
    assert utts[0].t_end == pytest.approx(3.0, abs=0.031)
    assert utts[1].t_end == pytest.approx(5.5, abs=0.031)
    # Pre-roll: the utterance starts before the detected onset (onset + 3 start frames).
    assert utts[0].t_start == pytest.approx(1.0 - 0.3, abs=0.1)
    assert all(u.cut_reason == "pause" for u in utts)
    # Detection happens one hangover after the end of speech.
    assert utts[0].t_detected - utts[0].t_end == pytest.approx(0.3, abs=0.031)


def test_chunk_size_does_not_change_the_result() -> None:
    signal = np.concatenate([silence(0.5), tone(1.2), silence(0.7), tone(0.9), silence(0.6)])
    a = [(u.t_start, u.t_end, len(u.audio)) for u in utterances(run(signal, CFG, chunk=160))]
    b = [(u.t_start, u.t_end, len(u.audio)) for u in utterances(run(signal, CFG, chunk=7777))]
    assert a == b and len(a) == 2


def test_short_burst_is_noise() -> None:
    signal = np.concatenate([silence(0.5), tone(0.15), silence(1.0)])
    assert utterances(run(signal, CFG)) == []


def test_progress_events_while_speaking() -> None:
    signal = np.concatenate([silence(0.5), tone(3.5), silence(1.0)])
    events = run(signal, CFG)
    progress = [e for e in events if isinstance(e, SpeechProgress)]
    # Every partial_interval_s of utterance audio (pre-roll and hangover included).
    assert [round(p.t_end - p.t_start) for p in progress] == [1, 2, 3, 4]
    assert isinstance(events[0], SpeechStarted)
    assert all(len(p.audio) > 0 for p in progress)


def test_long_monologue_is_split_never_dropped() -> None:
    speech = tone(59.0)
    signal = np.concatenate([silence(0.5), speech, silence(1.0)])
    utts = utterances(run(signal, CFG))
    assert len(utts) == 4
    assert [u.cut_reason for u in utts] == ["max_length"] * 3 + ["pause"]
    assert all(len(u.audio) <= 15.0 * SAMPLE_RATE for u in utts)
    # Every voiced sample is in exactly one utterance: spans tile the speech.
    for prev, nxt in zip(utts, utts[1:], strict=False):
        assert nxt.t_start == pytest.approx(prev.t_start + len(prev.audio) / SAMPLE_RATE)
    assert utts[-1].t_end == pytest.approx(59.5, abs=0.031)


def test_long_speech_is_cut_at_a_short_pause() -> None:
    cfg = SegmenterConfig(max_utterance_s=5.0, hangover_ms=300)
    signal = np.concatenate([silence(0.5), tone(4.0), silence(0.12), tone(3.0), silence(1.0)])
    utts = utterances(run(signal, cfg))
    assert utts[0].cut_reason == "max_length"
    assert utts[0].t_end == pytest.approx(4.5, abs=0.031)


def test_end_of_stream_closes_open_utterance() -> None:
    signal = np.concatenate([silence(0.5), tone(2.0)])
    utts = utterances(run(signal, CFG))
    assert len(utts) == 1 and utts[0].cut_reason == "end_of_stream"


def test_rejects_multichannel_input() -> None:
    seg = Segmenter(CFG, EnergyDetector())
    with pytest.raises(ValueError, match="mono"):
        seg.push(np.zeros((100, 2), dtype=np.float32))


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="needs espeak-ng")
def test_real_speech_with_webrtcvad() -> None:
    from harness.speech import Turn, conversation

    turns = [Turn("The weather is nice today."), Turn("I would like a cup of tea please."),
             Turn("See you tomorrow morning.")]
    audio = conversation(turns, gap_s=1.0)
    seg = Segmenter(SegmenterConfig())  # real webrtcvad
    events = seg.push(audio) + seg.flush()
    utts = utterances(events)
    assert len(utts) == 3
    assert all(0.8 < u.t_end - u.t_start < 4.0 for u in utts)


def test_pause_is_announced_before_the_hangover_ends() -> None:
    from streamer.core.messages import SpeechPaused

    # A 150 ms gap inside speech (shorter than the hangover), then the real end.
    signal = np.concatenate([silence(0.5), tone(1.0), silence(0.15), tone(1.0), silence(1.0)])
    events = run(signal, CFG)
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    (utt,) = utterances(events)
    assert len(pauses) == 2
    # The first pause was followed by speech: its audio ends before the end of speech,
    # so a speculative transcript of it must be discarded.
    assert pauses[0].t_end < utt.t_end
    # The last pause is the real end: its audio covers all the speech.
    assert pauses[1].t_end >= utt.t_end
    assert pauses[1].t_end - utt.t_end == pytest.approx(0.09, abs=0.031)


@pytest.mark.parametrize("chunk", [160, 1600, 4800])
def test_utterance_audio_is_the_speculative_audio(chunk: int) -> None:
    """At a pause the utterance's audio is exactly the last SpeechPaused's (speech plus the
    speculative pause), whatever the chunking: a reused speculation transcribed the same
    samples the final would have, so real time and --fast publish the same transcript."""
    from streamer.core.messages import SpeechPaused

    signal = np.concatenate([silence(0.5), tone(1.0), silence(0.15), tone(0.8), silence(1.0)])
    events = run(signal, CFG, chunk=chunk)
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    [utt] = utterances(events)
    assert len(pauses) == 2  # the short pause (speech resumed), then the end
    assert np.array_equal(utt.audio, pauses[-1].audio)
    assert pauses[-1].t_end == pytest.approx(utt.t_end + CFG.speculative_pause_ms / 1000,
                                             abs=1e-9)


# ---------------------------------------------------------------- turns


def bursts(lengths: list[float], gap_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Tone bursts separated by ``gap_s`` of silence; returns the signal and the gaps."""
    parts, gaps, t = [silence(0.5)], [], 0.5
    for length in lengths:
        parts += [tone(length), silence(gap_s)]
        t += length
        gaps.append((t, t + gap_s))
        t += gap_s
    parts.append(silence(1.0))
    return np.concatenate(parts), gaps


def test_a_long_turn_ends_at_a_short_pause_well_before_the_limit() -> None:
    """Continuous talk with 150 ms pauses between phrases (shorter than the 300 ms hangover):
    once turn_soft_s is reached the next such pause ends the utterance, as a pause."""
    signal, gaps = bursts([1.7] * 12, gap_s=0.15)
    utts = utterances(run(signal, CFG))
    assert len(utts) >= 3
    assert all(u.cut_reason == "pause" for u in utts)
    assert all(u.t_end - u.t_start <= CFG.turn_soft_s + 1.7 + 0.4 for u in utts)
    for u in utts[:-1]:  # every cut is inside a pause, never inside a phrase
        assert any(a - 0.031 <= u.t_end and u.t_start + len(u.audio) / SAMPLE_RATE <= b + 0.031
                   for a, b in gaps)


def test_at_the_limit_the_cut_is_at_the_best_pause() -> None:
    """Pauses too short to end a turn (60 ms): at max_utterance_s the cut goes to the
    longest pause after the first third, not to the limit."""
    cfg = SegmenterConfig(max_utterance_s=8.0, turn_soft_s=8.0)
    lengths = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    parts, t, gaps = [silence(0.5)], 0.5, []
    for i, length in enumerate(lengths):
        gap = 0.12 if i == 3 else 0.06  # the longest pause ends the 4th phrase
        parts += [tone(length), silence(gap)]
        gaps.append((t + length, t + length + gap))
        t += length + gap
    utts = utterances(run(np.concatenate([*parts, silence(1.0)]), cfg))
    first = utts[0]
    assert first.cut_reason == "max_length"
    a, b = gaps[3]
    assert first.t_end == pytest.approx(a, abs=0.031)
    assert a <= first.t_start + len(first.audio) / SAMPLE_RATE <= b + 0.031


def test_best_cut_without_any_pause_is_the_quietest_frame_of_the_final_third() -> None:
    from streamer.audio.segmenter import best_cut

    voiced = [True] * 30
    energy = [1.0] * 30
    energy[5] = 0.01  # quieter, but in the first third
    energy[25] = 0.1
    assert best_cut(voiced, energy) == 26
    voiced[12] = voiced[13] = voiced[20] = False
    assert best_cut(voiced, energy) == 14  # in the 2-frame run, the later of equals


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="needs espeak-ng")
def test_real_talk_is_cut_between_phrases() -> None:
    """espeak-ng phrases 180 ms apart (one long turn to a 300 ms hangover), real webrtcvad:
    every cut lies in a gap between phrases, none inside one, all well before 15 s."""
    from harness.speech import Turn, synthesize

    phrases = ["we looked at the numbers for the last quarter", "and the costs went up again",
               "mostly because of the new building", "so we want to move the team next year",
               "but nobody has asked the people who work there", "what they think about it",
               "and that is the part that worries me", "because they will have to travel more"]
    gap = silence(0.18)
    parts, spans, t = [silence(0.5)], [], 0.5
    for text in phrases:
        speech = synthesize(Turn(text))
        loud = np.flatnonzero(np.abs(speech) > 0.01)  # the phrase without espeak's silence
        speech = speech[loud[0]:loud[-1] + 1]
        parts += [speech, gap]
        spans.append((t, t + len(speech) / SAMPLE_RATE))
        t += (len(speech) + len(gap)) / SAMPLE_RATE
    seg = Segmenter(SegmenterConfig())
    audio = np.concatenate([*parts, silence(1.0)])
    utts = utterances(seg.push(audio) + seg.flush())
    assert len(utts) >= 3
    assert all(u.t_end - u.t_start < 10.0 for u in utts)
    for u in utts[:-1]:
        cut = u.t_start + len(u.audio) / SAMPLE_RATE
        assert not any(a < cut < b for a, b in spans), (cut, spans)
