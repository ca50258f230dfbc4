"""Loading the models once per process, and warming them up: the Whisper model and its ASR
engine (``asr.model``, and ``asr.model_8k`` for 8 kHz channels), the emotion model, the
speaker encoder with its enrolled parties. ``run``, ``serve`` and the Ray replicas all load
through here (``streamer/runtime.py`` wires the loaded models to the bus and publishers).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch

from models.asr import AsrEngine, Transcript
from models.audio import SAMPLE_RATE
from models.encoders.whisper import load_whisper
from models.errors import ModelError
from models.feature_stats import AdaptationSettings
from models.inference import EmotionInput, EmotionModel
from models.speaker_encoder import SpeakerEncoder
from models.speaker_segmentation import SpeakerSegmentation
from streamer.audio.audio_io import read_audio_file
from streamer.audio.speech_gate import rms_dbfs
from streamer.core.config import AppConfig, SpeakersConfig
from streamer.core.errors import AudioInputError, ConfigError, ModelLoadError
from streamer.engine.speakers import Voices, enrol

log = logging.getLogger(__name__)

MIN_ENROLMENT_S = 1.0  # a speakers.enrol recording shorter than this is refused
SILENT_DBFS = -60.0  # a recording this quiet holds no voice


@dataclass(frozen=True)
class Models:
    """Loaded once per process and shared by every stream."""

    whisper: Any  # faster_whisper.WhisperModel
    asr: AsrEngine
    emotion: EmotionModel
    asr_8k: AsrEngine | None = None  # asr.model_8k, for 8 kHz channels (None: asr serves them)
    speakers: Voices | None = None  # speakers.enabled: turns and labels


def load_models(config: AppConfig) -> Models:
    whisper, asr = load_asr(config)
    return Models(whisper=whisper, asr=asr, emotion=load_emotion(config, whisper),
                  asr_8k=load_asr_8k(config), speakers=load_speakers(config))


def load_asr_8k(config: AppConfig) -> AsrEngine | None:
    """``asr.model_8k`` for 8 kHz channels; None when unset or the same as ``asr.model``
    (then ``asr.model`` serves every channel)."""
    if config.asr.model_8k is None or config.asr.model_8k == config.asr.model:
        return None
    _, asr_8k = load_asr(config, config.asr.model_8k)
    return asr_8k


# speakers.int8 calibrates CAM++'s activation ranges on the bundled sample speech (RAVDESS
# actors and the espeak-ng call, 242 windows): real voices, shipped with the package.
INT8_CALIBRATION = ("sample_ravdess.flac", "sample_conversation.wav")


def speaker_calibration(speakers: SpeakersConfig) -> list[np.ndarray]:
    """The speech CAM++'s int8 convolutions are calibrated on (``speakers.int8``), else none."""
    if not speakers.int8:
        return []
    return [read_audio_file(str(resources.files("streamer") / "assets" / name))
            for name in INT8_CALIBRATION]


def load_speakers(config: AppConfig) -> Voices | None:
    """The speaker encoder and the enrolled parties when ``speakers.enabled`` (it runs in
    the driver process, also under ``--ray``: a small LSTM, a few ms per utterance)."""
    if not config.speakers.enabled:
        return None
    try:
        encoder = SpeakerEncoder(config.speakers.encoder, speaker_calibration(config.speakers))
    except ModelError as exc:
        raise ModelLoadError(f"speakers.enabled: {exc}") from exc
    parties = tuple(enrol(encoder, party.name, [enrolment_audio(party.name, path)
                                                for path in party.files])
                    for party in config.speakers.enrol)
    segmentation = None
    if config.speakers.segmentation:
        try:
            segmentation = SpeakerSegmentation()
        except ModelError as exc:
            raise ModelLoadError(f"speakers.segmentation: {exc}") from exc
    return Voices(encoder, parties, segmentation)


def enrolment_audio(name: str, path: str) -> np.ndarray:
    """A recording of an enrolled party, checked to hold enough sound to embed."""
    try:
        audio = read_audio_file(path)
    except AudioInputError as exc:
        raise ConfigError(f"speakers.enrol {name!r}: {exc}") from exc
    if len(audio) < MIN_ENROLMENT_S * SAMPLE_RATE:
        raise ConfigError(f"speakers.enrol {name!r}: '{path}' has {len(audio) / SAMPLE_RATE:.2f}"
                          f" s of audio; give at least {MIN_ENROLMENT_S:g} s of their voice")
    if not np.isfinite(audio).all():
        raise ConfigError(f"speakers.enrol {name!r}: '{path}' is invalid audio: it holds NaN "
                          "or infinite samples (a damaged or mis-written float file); give "
                          "a recording of their voice")
    if rms_dbfs(audio) < SILENT_DBFS:
        raise ConfigError(f"speakers.enrol {name!r}: '{path}' is silent; give a recording "
                          "of their voice")
    return audio


def load_asr(config: AppConfig, model: str | None = None) -> tuple[Any, AsrEngine]:
    """The Whisper model (``asr.model``, or ``model``) and its ASR engine with the ``asr``
    decoding settings (a Ray ASR replica loads only these)."""
    try:
        whisper = load_whisper(model or config.asr.model, device=config.asr.device,
                               compute_type=config.asr.compute_type,
                               cpu_threads=config.asr.cpu_threads,
                               num_workers=config.asr.workers)
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from exc
    return whisper, AsrEngine(config.asr.options(), whisper)


def load_emotion(config: AppConfig, whisper: Any) -> EmotionModel:
    """The fusion model; ``whisper`` computes its audio frames when the ASR's are not given."""
    torch.set_num_threads(config.emotion.torch_threads)
    try:
        model = EmotionModel.load(config.emotion.bundle, device=config.emotion.device,
                                 whisper_model=whisper, text_encoder=config.emotion.text_encoder,
                                 adaptation=AdaptationSettings(
                                     prior_weight=config.emotion.adaptation_prior_weight,
                                     window=config.emotion.adaptation_window,
                                     follow=config.emotion.adaptation),
                                 audio_int8=config.emotion.audio_int8)
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from exc
    if model.audio_int8:  # labels may differ from the trainer's float32 on borderline audio
        log.info("emotion model %s: its Whisper pass runs on int8 linear layers "
                 "(emotion.audio_int8; false: float32, as it was trained)", model.model_id)
    return model


def warm_audio() -> np.ndarray:
    """One second of quiet noise: what every warm-up runs through a model."""
    rng = np.random.default_rng(0)
    return (0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)


def warm_asr(*engines: AsrEngine | None) -> Transcript | None:
    """One final transcription per engine (the first call pays for allocations); the first
    engine's transcript."""
    transcripts = [engine.transcribe(warm_audio(), final=True)
                   for engine in engines if engine is not None]
    return transcripts[0] if transcripts else None


def warm_emotion(emotion: EmotionModel, transcript: Transcript | None = None) -> None:
    """One prediction, with ``transcript``'s words and encoder frames when there is one;
    never observed by the deployment statistics (it is not the deployment's audio)."""
    frames = transcript.encoder_frames if transcript is not None \
        and emotion.uses_whisper_frames else None
    emotion.predict([EmotionInput(
        audio=warm_audio(), text=(transcript.text if transcript else "") or "hello",
        words=transcript.words if transcript else (), whisper_frames=frames)], observe=False)


def warm_up(models: Models) -> float:
    """Run one utterance through ASR and fusion so the first call does not pay for it."""
    started = time.monotonic()
    transcript = warm_asr(models.asr, models.asr_8k)
    if models.speakers is not None:
        models.speakers.encoder.embed(warm_audio())
    warm_emotion(models.emotion, transcript)
    return time.monotonic() - started
