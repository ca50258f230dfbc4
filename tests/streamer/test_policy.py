"""Every rule of ``streamer.engine.policy.ChannelPolicy``, without I/O or models."""

from __future__ import annotations

import numpy as np
import pytest

from models.asr import Transcript, Word
from models.inference import ContextItem, EmotionPrediction
from streamer.core.events import validate_event
from streamer.core.messages import SpeechPaused, SpeechProgress, SpeechStarted, Utterance
from streamer.engine.policy import (
    Abstain,
    ChannelPolicy,
    ChannelRouting,
    DetectedUtterance,
    PolicyConfig,
    Publish,
    Recognize,
    RequestPartial,
    ReuseSpeculation,
    StageTimes,
    StartSpeculation,
    TranscribeFinal,
    route_channel,
)

LABELS = ("angry", "happy", "neutral", "sad")


def policy(**config: object) -> ChannelPolicy:
    return ChannelPolicy("s1", "mono", PolicyConfig(**config),  # type: ignore[arg-type]
                         "test-model", LABELS)


def audio(seconds: float) -> np.ndarray:
    """Speech-level noise (the audio checks pass; the ASR is not run here)."""
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def utterance(index: int = 0, t_start: float = 0.0, t_end: float = 1.0,
              t_detected: float = 1.3, audio_s: float | None = None) -> Utterance:
    """``audio_s``: its audio's length (default the speech, t_end - t_start)."""
    return Utterance(index, t_start, t_end,
                     audio(t_end - t_start if audio_s is None else audio_s), "pause", t_detected)


def paused(index: int = 0, t_end: float = 1.1) -> SpeechPaused:
    return SpeechPaused(index, 0.0, t_end, audio(t_end))


def progress(index: int = 0, t_end: float = 0.5, silence_ms: int = 0) -> SpeechProgress:
    return SpeechProgress(index, 0.0, t_end, audio(t_end), trailing_silence_ms=silence_ms)


def prediction(best: int, marker: float) -> EmotionPrediction:
    probs = np.full(len(LABELS), 0.1)
    probs[best] = 0.7
    item = ContextItem(text=f"u{marker}", audio_embedding=np.full(4, marker),
                       text_embedding=np.full(4, marker))
    return EmotionPrediction(LABELS, probs, None, None, None, item)


TIMES = StageTimes(waited_ms=5.0, asr_ms=40.0, fusion_queued_ms=2.0, fusion_run_ms=8.0,
                   processing_ms=60.0)


# ---------------------------------------------------------------- speculation


def test_speculation_starts_at_a_pause_only_with_an_idle_asr() -> None:
    p = policy()
    assert p.on_segment(paused(), asr_idle=False, wall=0.0) == []
    [command] = p.on_segment(paused(), asr_idle=True, wall=0.0)
    assert isinstance(command, StartSpeculation) and command.utterance_index == 0
    assert p.stats.speculations_started == 1


def test_speculation_disabled_by_config() -> None:
    assert policy(speculative=False).on_segment(paused(), asr_idle=True, wall=0.0) == []


def test_speculation_reused_when_no_speech_followed_the_pause() -> None:
    p = policy()
    p.on_segment(paused(t_end=1.1), asr_idle=True, wall=0.0)
    assert isinstance(p.plan_final(utterance(t_end=1.0, audio_s=1.1)), ReuseSpeculation)
    assert p.stats.speculations_reused == 1


def test_speculation_reused_only_on_the_very_same_audio() -> None:
    """Live equals offline: a speculation that transcribed other samples than the final
    utterance's (more or less trailing audio) is not its transcript."""
    p = policy()
    p.on_segment(paused(t_end=1.1), asr_idle=True, wall=0.0)
    plan = p.plan_final(utterance(t_end=1.0, audio_s=1.3))  # same speech, longer audio
    assert isinstance(plan, TranscribeFinal) and len(plan.audio) == int(1.3 * 16000)
    assert p.stats.speculations_discarded == 1


def test_speculation_discarded_when_speech_resumed() -> None:
    p = policy()
    p.on_segment(paused(t_end=1.1), asr_idle=True, wall=0.0)
    utt = utterance(t_end=2.0)  # the speaker went on after the pause
    plan = p.plan_final(utt)
    assert isinstance(plan, TranscribeFinal) and len(plan.audio) == len(utt.audio)
    assert p.stats.speculations_discarded == 1


def test_speculation_of_another_utterance_is_not_reused() -> None:
    p = policy()
    p.on_segment(paused(index=1, t_end=5.0), asr_idle=True, wall=0.0)
    assert isinstance(p.plan_final(utterance(index=0, t_end=1.0)), TranscribeFinal)


def test_speculation_used_once() -> None:
    p = policy()
    p.on_segment(paused(t_end=1.1), asr_idle=True, wall=0.0)
    assert isinstance(p.plan_final(utterance(t_end=1.0, audio_s=1.1)), ReuseSpeculation)
    assert isinstance(p.plan_final(utterance(t_end=1.0, audio_s=1.1)), TranscribeFinal)


def test_a_later_pause_replaces_the_speculation() -> None:
    p = policy()
    p.on_segment(paused(t_end=1.1), asr_idle=True, wall=0.0)
    p.on_segment(paused(t_end=2.1), asr_idle=True, wall=0.0)  # speech resumed, paused again
    assert p.stats.speculations_discarded == 1
    assert isinstance(p.plan_final(utterance(t_end=2.0, audio_s=2.1)), ReuseSpeculation)


# ---------------------------------------------------------------- partials


def test_partials_only_mid_speech_with_an_idle_asr() -> None:
    p = policy()
    [command] = p.on_segment(progress(), asr_idle=True, wall=0.0)
    assert isinstance(command, RequestPartial)
    assert p.on_segment(progress(), asr_idle=False, wall=0.0) == []
    assert p.on_segment(progress(silence_ms=60), asr_idle=True, wall=0.0) == []
    assert policy(partials=False).on_segment(progress(), asr_idle=True, wall=0.0) == []


def test_partial_published_with_stable_prefix() -> None:
    p = policy()
    [first] = p.on_partial(progress(), "hello there")
    [second] = p.on_partial(progress(t_end=1.0), "hello there my friend")
    assert isinstance(first, Publish) and isinstance(second, Publish)
    assert first.event["stable_text"] == ""
    assert second.event["stable_text"] == "hello there"
    assert second.event["type"] == "utterance.partial"
    validate_event(second.event)


def test_stale_partial_dropped_after_the_final() -> None:
    p = policy()
    p.emotion_input(utterance(index=0), Transcript("hi"), with_frames=False)
    assert p.on_partial(progress(index=0), "hi") == []
    assert p.stats.partials_dropped == 1
    assert len(p.on_partial(progress(index=1), "next one")) == 1  # a later utterance is fine


def test_speech_started_resets_the_committer() -> None:
    p = policy()
    p.on_partial(progress(index=0), "one two")
    p.on_partial(progress(index=0), "one two three")
    p.on_segment(SpeechStarted(2.0, 1), asr_idle=True, wall=0.0)
    [event] = p.on_partial(progress(index=1), "one two")
    assert isinstance(event, Publish) and event.event["stable_text"] == ""


# ---------------------------------------------------------------- utterances, context


def test_utterance_queued_with_detection_time_and_stream_time() -> None:
    p = policy()
    p.on_audio(1.5)
    [command] = p.on_segment(utterance(t_detected=1.3), asr_idle=True, wall=42.0)
    assert isinstance(command, Recognize)
    assert command.detected.stream_time == 1.5 and command.detected.wall == 42.0


def test_context_is_oldest_first_and_bounded() -> None:
    p = policy(context_size=2)
    for i in range(3):
        utt = utterance(index=i)
        p.emotion_input(utt, Transcript("x"), with_frames=False)
        p.on_prediction(DetectedUtterance(utt, 1.3, 0.0), Transcript("x"),
                        prediction(0, float(i)), TIMES)
    context = p.emotion_input(utterance(index=3), Transcript("y"), with_frames=False).context
    assert [c.text for c in context] == ["u1.0", "u2.0"]


def test_emotion_input_passes_words_and_frames_only_when_used() -> None:
    frames = np.ones((50, 8), dtype=np.float32)
    transcript = Transcript("hi", (Word("hi", 0.1, 0.4, 0.9),), "en", encoder_frames=frames)
    p = policy()
    with_frames = p.emotion_input(utterance(), transcript, with_frames=True)
    assert with_frames.whisper_frames is frames and with_frames.words == transcript.words
    assert p.emotion_input(utterance(), transcript, with_frames=False).whisper_frames is None


# ---------------------------------------------------------------- events, latency


def test_emotion_event_label_confidence_and_latency() -> None:
    p = policy()
    utt = utterance(t_end=1.0)
    detected = DetectedUtterance(utt, stream_time=1.32, wall=0.0)
    transcript = Transcript("I am fine", (Word("I", 0.0, 0.1, 0.9),), "en")
    publish = p.on_prediction(detected, transcript, prediction(1, 0.0), TIMES)
    event = publish.event
    validate_event(event)
    assert event["label"] == "happy" and event["confidence"] == pytest.approx(0.7)
    latency = event["latency"]
    assert latency["vad_hangover_ms"] == pytest.approx(320.0)
    assert latency["queue_ms"] == pytest.approx(7.0)  # waited + fusion queue
    assert latency["asr_ms"] == 40.0 and latency["fusion_ms"] == 8.0
    assert latency["total_ms"] == pytest.approx(380.0)  # hangover + processing
    assert p.utterances == 1


def test_word_times_in_events_are_stream_times() -> None:
    """The ASR's word times are relative to the utterance's audio; events carry stream times
    (schema emotion-stream/2), on the same clock as t_start/t_end."""
    p = policy()
    utt = utterance(t_start=12.5, t_end=14.0)
    transcript = Transcript("I am fine", (Word("I", 0.3, 0.45, 0.9), Word("am", 0.5, 0.7, 0.9),
                                          Word("fine", 0.8, 1.2, 0.9)), "en")
    event = p.on_prediction(DetectedUtterance(utt, 14.3, 0.0), transcript, prediction(1, 0.0),
                            TIMES).event
    validate_event(event)
    assert event["schema"] == "emotion-stream/4"
    assert [(w["start"], w["end"]) for w in event["words"]] == [
        (12.8, 12.95), (13.0, 13.2), (13.3, 13.7)]
    assert all(event["t_start"] <= w["start"] <= w["end"] <= event["t_end"]
               for w in event["words"])


def test_stream_started_and_ended_events() -> None:
    p = policy()
    started = p.started("file:x.wav")
    p.on_audio(12.5)
    ended = p.ended("end_of_input")
    for event in (started, ended):
        validate_event(event)
    assert started["labels"] == list(LABELS) and started["model_id"] == "test-model"
    assert ended["duration_s"] == 12.5 and ended["utterances"] == 0


# ---------------------------------------------------------------- non-speech


@pytest.mark.parametrize(("samples", "reason"), [
    (np.zeros(16000, dtype=np.float32), "too_quiet"),
    (np.full(16000, 0.3, dtype=np.float32), "too_quiet"),  # DC offset only
    (np.where(np.arange(16000) % 1000 == 0, np.nan, 0.1).astype(np.float32), "invalid_audio"),
    (np.sign(np.sin(np.arange(16000) / 5)).astype(np.float32), "clipped"),  # full-scale square
])
def test_unusable_audio_is_not_transcribed(samples: np.ndarray, reason: str) -> None:
    p = policy()
    p.on_segment(paused(), asr_idle=True, wall=0.0)
    utt = Utterance(0, 0.0, 1.0, samples, "pause", 1.3)
    plan = p.plan_final(utt)
    assert plan == Abstain(reason)  # type: ignore[arg-type]
    assert p.stats.speculations_discarded == 1
    event = p.on_abstain(DetectedUtterance(utt, 1.3, 0.0), None, plan, TIMES).event
    validate_event(event)
    assert event["speech"] is False and event["abstain_reason"] == reason
    assert event["label"] == "unknown" and event["probabilities"] == {}
    assert event["confidence"] == 0
    ended = p.ended("end_of_input")
    validate_event(ended)
    assert ended["nonspeech_utterances"] == 1 and ended["utterances"] == 1


def test_no_words_or_whisper_silence_abstains_and_stays_out_of_context() -> None:
    p = policy()
    utt = utterance()
    assert p.check_transcript(utt, Transcript("", no_speech_prob=0.1, avg_logprob=-0.3)) \
        == Abstain("no_words")
    assert p.check_transcript(utt, Transcript(" . ", no_speech_prob=0.1, avg_logprob=-0.3)) \
        == Abstain("no_words")  # punctuation is no words
    assert p.check_transcript(utt, Transcript("Thank you.", no_speech_prob=0.9,
                                              avg_logprob=-1.4)) == Abstain("no_speech")
    assert p.check_transcript(utt, Transcript("You", no_speech_prob=0.85,
                                              avg_logprob=-0.96)) == Abstain("no_speech")
    assert p.check_transcript(utt, Transcript("Thank you.", no_speech_prob=0.9,
                                              avg_logprob=-0.2)) is None  # confident words
    p.on_abstain(DetectedUtterance(utt, 1.3, 0.0), Transcript(""), Abstain("no_words"), TIMES)
    assert p.emotion_input(utterance(index=1), Transcript("x"), with_frames=False).context == ()


def test_gate_disabled_claims_everything() -> None:
    from streamer.core.config import GateConfig

    p = policy(gate=GateConfig(enabled=False))
    utt = Utterance(0, 0.0, 1.0, np.zeros(16000, dtype=np.float32), "pause", 1.3)
    assert isinstance(p.plan_final(utt), TranscribeFinal)
    assert p.check_transcript(utt, Transcript("")) is None


def test_speech_event_says_speech_true() -> None:
    p = policy()
    utt = utterance()
    event = p.on_prediction(DetectedUtterance(utt, 1.3, 0.0), Transcript("ok"),
                            prediction(2, 0.0), TIMES).event
    assert event["speech"] is True and event["abstain_reason"] is None


def test_repetition_loop_is_not_speech() -> None:
    p = policy()
    looped = Transcript("Be " * 60, no_speech_prob=0.2, avg_logprob=-0.4, compression_ratio=9.5)
    assert p.check_transcript(utterance(), looped) == Abstain("repetitive_text")
    said = Transcript("I'm furious, you charged me twice.", no_speech_prob=0.01,
                      avg_logprob=-0.2, compression_ratio=1.1)
    assert p.check_transcript(utterance(), said) is None


def test_schema_lists_every_abstain_reason() -> None:
    from streamer.audio.speech_gate import REASONS
    from streamer.core.events import load_schema

    emotion = load_schema()["$defs"]["utterance_emotion"]
    assert emotion["properties"]["abstain_reason"]["enum"] == [None, *REASONS]


# ---------------------------------------------------------------- loops


@pytest.mark.parametrize(("text", "loop"), [
    ("Any z. Any z. Any z.", ("any z", 3)),
    ("I think that I think that I think that we should go", ("i think that", 3)),
    ("so so so so", ("so", 4)),
    ("No, no, no! Stop it.", None),  # a word three times is speech
    ("Thank you, thank you.", None),
    ("We keep talking about the plan for the new office and the budget.", None),
    ("", None),
])
def test_repeated_phrases_are_found(text: str, loop: tuple[str, int] | None) -> None:
    from streamer.audio.speech_gate import repeated_ngram

    assert repeated_ngram(text) == loop


def test_a_looping_final_from_the_short_window_is_decoded_again_once() -> None:
    p = policy()
    utt = utterance(t_end=4.0)
    looped = Transcript("Any z. Any z. Any z.", compression_ratio=1.2,
                        encoder_frames=np.ones((200, 4), np.float32))
    redecode = p.plan_redecode(utt, looped)
    assert redecode is not None and redecode.audio is utt.audio
    again = Transcript("Any questions?", encoder_frames=np.zeros((1500, 4), np.float32))
    final = p.redecoded(looped, again)
    # the full window's words, the short window's frames (what the emotion model expects)
    assert final.text == "Any questions?" and final.encoder_frames is looped.encoder_frames
    compressible = Transcript("Be " * 60, compression_ratio=9.5)
    assert p.plan_redecode(utt, compressible) is not None
    assert p.plan_redecode(utt, Transcript("I'm fine, thanks.", compression_ratio=0.9)) is None
    ended = p.ended("end_of_input")
    validate_event(ended)
    assert ended["redecoded_utterances"] == 2 and p.stats.redecodes == 2


def test_no_redecode_when_the_first_pass_had_the_full_window() -> None:
    looped = Transcript("Any z. Any z. Any z.")
    assert policy().plan_redecode(utterance(t_end=12.0), looped) is None  # > 10 s: 30 s window
    assert policy(asr_window_s=30.0).plan_redecode(utterance(), looped) is None
    assert policy(redecode_loops=False).plan_redecode(utterance(), looped) is None


def test_an_8khz_channel_goes_to_the_8khz_model_and_its_emotion_model_encodes_itself() -> None:
    assert route_channel(8000, narrowband_model=True, uses_whisper_frames=True) == \
        ChannelRouting(narrowband=True, band="telephone", asr_frames=False)
    # no asr.model_8k loaded: the one ASR model serves it, and its frames are the model's
    assert route_channel(8000, narrowband_model=False, uses_whisper_frames=True) == \
        ChannelRouting(narrowband=False, band="telephone", asr_frames=True)
    assert route_channel(16000, narrowband_model=True, uses_whisper_frames=True) == \
        ChannelRouting(narrowband=False, band="wideband", asr_frames=True)
    assert route_channel(None, narrowband_model=True, uses_whisper_frames=False) == \
        ChannelRouting(narrowband=False, band="wideband", asr_frames=False)
