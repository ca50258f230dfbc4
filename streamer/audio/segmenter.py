"""Voice-activity segmentation into utterances: a sans-I/O state machine over webrtcvad.

``push(samples)`` takes 16 kHz mono float32 audio of any length and returns the
events it caused; ``flush()`` ends the stream. No I/O, no clocks: times are
derived from the number of samples pushed, so tests feed numpy arrays.

Rules:
- An utterance opens after ``start_frames`` consecutive voiced frames; the
  ``preroll_ms`` of audio before them is kept.
- After ``speculative_pause_ms`` of unvoiced frames it emits ``SpeechPaused`` (the
  recognizer starts the final transcription early, hidden by the hangover).
- It ends after ``hangover_ms`` of unvoiced frames. Its audio runs
  ``speculative_pause_ms`` past the end of speech, exactly the audio of the
  ``SpeechPaused`` at that pause: a speculative final then transcribed what the
  final would, and real time gives the transcripts of ``--fast``. ``t_end`` is
  the end of the last voiced frame, i.e. the end of speech.
- Speech shorter than ``min_utterance_ms`` is discarded as noise.
- Turns, not fixed cuts: once an utterance is ``turn_soft_s`` long, a pause of
  ``turn_pause_ms`` (shorter than the hangover) ends it as a pause, so long talk
  is cut between phrases well before the limit.
- Speech that reaches ``max_utterance_s`` without such a pause is cut at its best
  pause: the longest unvoiced run after the first third (the latest of equals),
  at its quietest frame; with no unvoiced frame at all, at the quietest frame
  of the final third (quietest 10 ms: an energy minimum, not the limit). The rest
  carries on as the next utterance, so nothing is dropped.
- Speaker turns (with a ``ChangeDetector``): a pause inside speech of at least
  ``min_pause_ms`` is a candidate turn boundary. Once ``window_s`` of audio follows it
  (or the utterance ends, with at least half that), the detector compares the speech
  before the pause with the speech after it. A cosine below ``change_cosine`` says a
  change is near: every later candidate whose window overlaps this one's is compared too
  (once its window is full), and the utterance is cut at the candidate with the lowest
  cosine (``cut_reason: "speaker_change"``): a pause just before the real change already
  has the next voice in its window and can score low too. What follows, with up to
  ``preroll_ms`` of the pause before it, carries on as the next utterance. Causal: the
  decision needs only audio already pushed, and the same audio gives the same cuts at
  any pace.
- Speaker turns without a pause (``scan_hop_s`` > 0): when two people overlap there is no
  pause to cut at. Every ``scan_hop_s`` of the open utterance, the window of speech ending
  there is compared with the window starting there (embeddings of ``window_s`` each, every
  window embedded once); a point whose distance (the detector's ``distance``: 1 - cosine,
  sharpened by the voices heard so far) exceeds ``scan_distance`` and is the largest within
  ``scan_peak_s`` on either side, away from any candidate pause, is a change: the
  utterance is cut at its quietest frame within half a hop.
- With a segmentation model (``segment_hop_s`` > 0): every ``segment_hop_s`` of the open
  utterance, its last 10 s are segmented; each speaker change the model finds, once a
  window of speech follows it and away from any candidate pause, is compared as a pause
  would be (the window before and after it) and cut at on a low cosine (at its quietest
  frame within 40 ms). When a pause looks like a change, the model is run then on the
  last 10 s: the cut goes to the low-cosine pause nearest to the change it finds (within
  0.3 s), else to that change itself; when it finds none there, to the lowest cosine.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np

from models.audio import SAMPLE_RATE
from streamer.audio.vad_level import VadLevel
from streamer.core.config import SegmenterConfig
from streamer.core.messages import (
    SegmenterEvent,
    SpeechPaused,
    SpeechProgress,
    SpeechStarted,
    Utterance,
)

SEGMENT_MS = 10_000  # the segmentation model's window: the audio it is given at most
SEGMENT_NEAR_MS = 300  # a pause this near a segmentation change is where the change is
SUBFRAME = SAMPLE_RATE // 100  # 10 ms: the resolution at which a long turn's cut is placed
DIP_RATIO = 10 ** (-30 / 10)  # a frame whose quietest 10 ms is 30 dB under the speech: a gap


class VoiceDetector(Protocol):
    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


class ChangeDetector(Protocol):
    """Compares the voices before and after a pause (``streamer.engine.speakers.SpeakerChange``)."""

    @property
    def window_s(self) -> float: ...  # audio after the pause it wants to decide

    @property
    def before_s(self) -> float: ...  # audio before the pause it compares with

    @property
    def min_pause_ms(self) -> int: ...  # the shortest unvoiced run that is a candidate

    @property
    def change_cosine(self) -> float: ...  # a cosine below it: another speaker

    def cosine(self, before: np.ndarray, after: np.ndarray) -> float: ...  # of the two voices

    def note_cut(self) -> None: ...  # the utterance was cut at a speaker change (stats)

    @property
    def scan_hop_s(self) -> float: ...  # 0: changes only at pauses

    @property
    def scan_distance(self) -> float: ...  # a distance (1 - cosine) above it: a change

    @property
    def scan_peak_s(self) -> float: ...  # a change is the largest distance this near

    def embed(self, audio: np.ndarray) -> np.ndarray: ...  # L2-normalised

    def distance(self, first: np.ndarray, second: np.ndarray) -> float: ...  # of two embeds

    @property
    def segment_hop_s(self) -> float: ...  # 0: no segmentation model

    def segment(self, audio: np.ndarray) -> tuple[float, ...]: ...  # changes, s from start


def make_vad(aggressiveness: int) -> VoiceDetector:
    import webrtcvad

    vad: VoiceDetector = webrtcvad.Vad(aggressiveness)
    return vad


def to_int16_bytes(samples: np.ndarray) -> bytes:
    # NaN/inf (a broken float file) must not crash the VAD; the speech gate rejects them.
    clipped = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    pcm: bytes = (clipped * 32767.0).astype("<i2").tobytes()
    return pcm


class Segmenter:
    def __init__(self, config: SegmenterConfig, vad: VoiceDetector | None = None,
                 change: ChangeDetector | None = None) -> None:
        self._cfg = config
        self._change = change
        self._scan_hop = self._scan_window = self._scan_peak = 0  # frames; 0: no scan
        self._segment_hop = 0  # frames; 0: no segmentation model
        self._segment_frames = SEGMENT_MS // config.frame_ms
        self._segment_near = SEGMENT_NEAR_MS // config.frame_ms
        if change is not None:
            if change.segment_hop_s > 0:
                self._segment_hop = max(1, int(change.segment_hop_s * 1000) // config.frame_ms)
            self._change_window = max(1, int(change.window_s * 1000) // config.frame_ms)
            self._change_before = max(1, int(change.before_s * 1000) // config.frame_ms)
            self._change_pause = max(1, change.min_pause_ms // config.frame_ms)
            hop = int(change.scan_hop_s * 1000) // config.frame_ms
            self._scan_hop = max(1, hop) if change.scan_hop_s > 0 else 0
            if self._scan_hop:  # windows on the hop grid, so each is embedded once
                self._scan_window = max(1, round(self._change_window / self._scan_hop)) \
                    * self._scan_hop
                self._scan_peak = max(1, round(change.scan_peak_s * 1000 / config.frame_ms
                                               / self._scan_hop))
        self._vad = vad if vad is not None else make_vad(config.aggressiveness)
        # quiet streams raised for the VAD only (segmenter.vad_gain_max_db; None: off)
        self._level = VadLevel(config.vad_target_dbfs, config.vad_gain_max_db,
                               max(1, int(config.vad_level_window_s * 1000) // config.frame_ms)
                               ) if config.vad_gain_max_db > 0 else None
        self._frame_len = SAMPLE_RATE * config.frame_ms // 1000
        self._hangover_frames = max(1, config.hangover_ms // config.frame_ms)
        self._preroll_frames = config.preroll_ms // config.frame_ms
        self._min_frames = max(1, config.min_utterance_ms // config.frame_ms)
        self._max_frames = int(config.max_utterance_s * 1000) // config.frame_ms
        self._progress_frames = max(1, int(config.partial_interval_s * 1000) // config.frame_ms)
        self._pause_frames = max(1, config.speculative_pause_ms // config.frame_ms)
        self._turn_frames = int(config.turn_soft_s * 1000) // config.frame_ms
        self._turn_pause_frames = max(1, config.turn_pause_ms // config.frame_ms)

        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet forming a whole frame
        self._frame_index = 0  # index of the next frame to classify
        # Silence state: recent frames kept as pre-roll, plus the current voiced run.
        self._recent: deque[tuple[np.ndarray, bool, float]] = deque(
            maxlen=self._preroll_frames + config.start_frames
        )
        self._voiced_run = 0
        # Speech state.
        self._in_speech = False
        self._frames: list[np.ndarray] = []
        self._voiced: list[bool] = []
        # per frame, the mean square of its quietest 10 ms: where to cut a long turn
        self._energy: list[float] = []
        self._start_frame = 0
        self._silence_run = 0
        self._next_progress = 0
        self._utterance_index = 0
        # Undecided candidate turn boundaries, oldest first: (pause start, pause end) frame
        # indices within the open utterance (the end: its first frame after the pause).
        self._candidates: list[tuple[int, int]] = []
        # their cosines once compared (None: too little speech on a side), so that each
        # is embedded once while the candidates near a change wait for their windows
        self._cosines: dict[tuple[int, int], float | None] = {}
        self._quiet_run = 0  # frames unvoiced or dipped, up to the current one
        # The scan for changes without a pause: window embeddings by start frame, the
        # distance at each grid frame, and the pauses noted (their end frames), all within
        # the open utterance.
        self._scan_embeddings: dict[int, np.ndarray] = {}
        self._scan_distances: dict[int, float] = {}
        self._scan_next = self._scan_window  # the grid frame whose distance is decided next
        self._pause_ends: list[int] = []
        # Segmentation: the utterance length at its next run, and the frame before which
        # its changes were decided (each change once, with a window of speech after it).
        self._segment_next = self._segment_hop
        self._segment_decided = 0

    # ------------------------------------------------------------------ public
    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def trailing_silence_ms(self) -> int:
        """Unvoiced time at the end of the open utterance (0 while the speaker is talking)."""
        return self._silence_run * self._cfg.frame_ms if self._in_speech else 0

    def push(self, samples: np.ndarray) -> list[SegmenterEvent]:
        if samples.ndim != 1:
            raise ValueError(f"segmenter expects mono 1-D audio, got shape {samples.shape}")
        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n_frames = len(audio) // self._frame_len
        events: list[SegmenterEvent] = []
        for i in range(n_frames):
            frame = audio[i * self._frame_len : (i + 1) * self._frame_len]
            heard = frame if self._level is None else frame * np.float32(self._level.gain(frame))
            voiced = self._vad.is_speech(to_int16_bytes(heard), SAMPLE_RATE)
            events.extend(self._step(frame, voiced))
            self._frame_index += 1
        self._pending = audio[n_frames * self._frame_len :].copy()
        return events

    def flush(self) -> list[SegmenterEvent]:
        """End of stream: close an open utterance (if long enough)."""
        events = self._close_now("end_of_stream")
        self._pending = np.zeros(0, dtype=np.float32)
        return events

    def pause(self) -> list[SegmenterEvent]:
        """The audio stops for a while (a hold): close an open utterance as at a pause.

        What follows continues the stream (a partial frame waits for the next audio).
        """
        events = self._close_now("pause")
        self._recent.clear()
        self._voiced_run = 0
        return events

    def _close_now(self, reason: str) -> list[SegmenterEvent]:
        return self._end(reason) if self._in_speech else []

    def _end(self, reason: str) -> list[SegmenterEvent]:
        """End the open utterance: pending turn boundaries are decided first."""
        return [*self._decide_change(final=True), *self._close(len(self._frames), reason)]

    # ----------------------------------------------------------------- private
    def _time(self, frame_index: int) -> float:
        return frame_index * self._frame_len / SAMPLE_RATE

    def _step(self, frame: np.ndarray, voiced: bool) -> list[SegmenterEvent]:
        # The quietest 10 ms of the frame: a 30 ms gap between words, which webrtcvad
        # smooths over, shows as a dip wherever the frame grid falls.
        sub = frame[: len(frame) // SUBFRAME * SUBFRAME].reshape(-1, SUBFRAME)
        energy = float(np.min(np.mean(np.square(sub, dtype=np.float64), axis=1)))
        if not self._in_speech:
            return self._step_silence(frame, voiced, energy)
        return self._step_speech(frame, voiced, energy)

    def _step_silence(self, frame: np.ndarray, voiced: bool,
                      energy: float) -> list[SegmenterEvent]:
        self._recent.append((frame, voiced, energy))
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if self._voiced_run < self._cfg.start_frames:
            return []
        recent = list(self._recent)
        self._recent.clear()
        self._voiced_run = 0
        return self._open([f for f, _, _ in recent], [v for _, v, _ in recent],
                          [e for _, _, e in recent], self._frame_index + 1 - len(recent))

    def _open(self, frames: list[np.ndarray], voiced: list[bool], energy: list[float],
              start: int) -> list[SegmenterEvent]:
        self._in_speech = True
        self._frames = frames
        self._voiced = voiced
        self._energy = energy
        self._start_frame = start
        # 0 after an onset; the unvoiced tail of the rest after a cut inside speech
        self._silence_run = next((i for i, v in enumerate(reversed(voiced)) if v), len(voiced))
        self._next_progress = self._progress_frames
        self._candidates = []
        self._cosines = {}
        self._quiet_run = 0
        self._scan_embeddings, self._scan_distances = {}, {}
        self._scan_next = self._scan_window
        self._pause_ends = []
        self._segment_next = len(frames) + self._segment_hop
        self._segment_decided = 0
        return [SpeechStarted(t_start=self._time(start), utterance_index=self._utterance_index)]

    def _step_speech(self, frame: np.ndarray, voiced: bool,
                     energy: float) -> list[SegmenterEvent]:
        self._frames.append(frame)
        self._voiced.append(voiced)
        self._energy.append(energy)
        self._silence_run = 0 if voiced else self._silence_run + 1
        if self._change is not None:
            turn = self._track_change(voiced, energy)
            if not turn and self._scan_hop:
                turn = self._scan()
            if not turn and self._segment_hop and len(self._frames) >= self._segment_next:
                turn = self._segment()
            if turn:
                return turn
        # A long turn ends at a shorter pause: between phrases, well before the limit.
        ends_at = self._turn_pause_frames if len(self._frames) - self._silence_run \
            >= self._turn_frames else self._hangover_frames
        if self._silence_run >= ends_at:
            return self._end("pause")
        if self._silence_run == self._pause_frames:
            return [SpeechPaused(
                utterance_index=self._utterance_index,
                t_start=self._time(self._start_frame),
                t_end=self._time(self._start_frame + len(self._frames)),
                audio=np.concatenate(self._frames),
            )]
        if len(self._frames) >= self._max_frames:
            return self._cut_long()
        if len(self._frames) >= self._next_progress:
            self._next_progress += self._progress_frames
            return [
                SpeechProgress(
                    utterance_index=self._utterance_index,
                    t_start=self._time(self._start_frame),
                    t_end=self._time(self._start_frame + len(self._frames)),
                    audio=np.concatenate(self._frames),
                    trailing_silence_ms=self._silence_run * self._cfg.frame_ms,
                )
            ]
        return []

    def _last_voiced(self, upto: int) -> int:
        """Index (within the utterance) one past the last voiced frame before ``upto``."""
        for i in range(upto - 1, -1, -1):
            if self._voiced[i]:
                return i + 1
        return 0

    def _track_change(self, voiced: bool, energy: float) -> list[SegmenterEvent]:
        """Note a pause inside speech as a candidate turn boundary; decide it once
        ``window_s`` of audio follows (or at the next candidate, with what it has).

        A pause is a run of unvoiced frames or of energy dips: webrtcvad smooths a 100 ms
        gap between two speakers into voiced frames, but its quietest 10 ms stays far below
        the speech's level."""
        n = len(self._frames)
        speech = [e for e, v in zip(self._energy, self._voiced, strict=True) if v]
        level = float(np.median(speech)) if speech else 0.0
        quiet = not voiced or energy < level * DIP_RATIO
        pause, self._quiet_run = self._quiet_run, (self._quiet_run + 1 if quiet else 0)
        if not quiet and pause >= self._change_pause and n - 1 - pause > 0:
            self._candidates.append((n - 1 - pause, n - 1))
            self._pause_ends.append(n - 1)
        if self._candidates and n - self._candidates[0][1] >= self._change_window:
            return self._decide_change(final=False)
        return []

    def _decide_change(self, final: bool) -> list[SegmenterEvent]:
        """Compare candidates oldest first, each once its window is full; at a cosine
        below the threshold, cut at the lowest cosine among the candidates whose windows
        overlap that one's, once all their windows are full. ``final`` (the utterance
        ends): decide every candidate, each with what follows it (at least half the
        window), and cut at every change."""
        if self._change is None:
            return []
        window = self._change_window
        while self._candidates:
            first = self._candidates[0]
            if not final and len(self._frames) - first[1] < window:
                return []
            cosine = self._cosine(first)
            if cosine is None or cosine >= self._change.change_cosine:
                self._candidates.pop(0)
                continue
            near = [c for c in self._candidates if c[0] < first[1] + window]
            if not final and len(self._frames) - near[-1][1] < window:
                return []  # decided when the last near candidate's window is full
            scored = [(s, c) for c in near if (s := self._cosine(c)) is not None]
            _, (pause_start, pause_end) = min(scored)  # lowest cosine, then earliest
            cut, rest_from = pause_end, max(pause_start, pause_end - self._preroll_frames)
            if self._segment_hop:  # where the model puts it; else the lowest cosine
                cut, rest_from = self._place_change(
                    [c for s, c in scored if s < self._change.change_cosine],
                    first[0] - self._change_before, near[-1][1] + window) \
                    or (cut, rest_from)
            self._candidates = [c for c in self._candidates if c[0] >= cut]
            events = self._cut_at_change(cut, rest_from)
            return events + (self._decide_change(final) if final else [])
        return []

    def _place_change(self, low: list[tuple[int, int]], lo: int, hi: int
                      ) -> tuple[int, int] | None:
        """Where the segmentation model puts the change that pauses with a low cosine
        announce: its first change in [lo, hi] (the frames their windows compare) gives
        (cut, rest_from) at the low pause nearest to it (within SEGMENT_NEAR_MS), else at
        its quietest frame within 40 ms; None when it finds no change there. (The model
        does not veto the cut: letting it, measured, cut fewer false changes but missed
        more real ones, same-sex ones above all; docs/conversations.md.)"""
        marks = [m for m in self._segment_marks() if lo <= m <= hi
                 and 2 * m >= self._change_window and m < len(self._frames) - 1]
        if not marks:
            return None
        mark = marks[0]
        nearest = min(low, key=lambda c: (abs(c[1] - mark), c))
        if abs(nearest[1] - mark) <= self._segment_near:
            return nearest[1], max(nearest[0], nearest[1] - self._preroll_frames)
        n = len(self._frames)
        cut = min(range(max(1, mark - 2), min(n - 1, mark + 2) + 1),
                  key=lambda k: (self._energy[k], k))
        return cut, cut

    def _cosine(self, candidate: tuple[int, int]) -> float | None:
        """The cosine of the voices before and after a candidate pause (embedded once);
        None when either side has under half a window of audio."""
        assert self._change is not None
        if candidate not in self._cosines:
            pause_start, pause_end = candidate
            after = self._frames[pause_end:pause_end + self._change_window]
            cosine = None
            if 2 * len(after) >= self._change_window \
                    and 2 * pause_start >= self._change_window:
                before = self._frames[max(0, pause_start - self._change_before):pause_start]
                cosine = self._change.cosine(np.concatenate(before), np.concatenate(after))
            self._cosines[candidate] = cosine
        return self._cosines[candidate]

    def _segment_marks(self) -> list[int]:
        """The frames (within the utterance) where the segmentation model finds a speaker
        change in the utterance's last 10 s."""
        assert self._change is not None
        lo = max(0, len(self._frames) - self._segment_frames)
        audio = np.concatenate(self._frames[lo:])
        if len(audio) < SAMPLE_RATE // 10:  # the model sees 62 ms per frame
            return []
        return [lo + round(t * SAMPLE_RATE / self._frame_len)
                for t in self._change.segment(audio)]

    def _segment(self) -> list[SegmenterEvent]:
        """Segment the utterance's last 10 s; decide the changes that now have a window of
        speech after them: a low cosine across one cuts there."""
        assert self._change is not None
        n, window = len(self._frames), self._change_window
        self._segment_next = n + self._segment_hop
        upto = n - window
        for mark in self._segment_marks():
            if not self._segment_decided <= mark <= upto or 2 * mark < window \
                    or any(abs(end - mark) <= self._segment_near for end in self._pause_ends):
                continue  # a pause there: its candidate decides
            before = self._frames[max(0, mark - self._change_before):mark]
            after = self._frames[mark:mark + window]
            if self._change.cosine(np.concatenate(before), np.concatenate(after)) \
                    < self._change.change_cosine:
                cut = min(range(max(1, mark - 2), min(n - 1, mark + 2) + 1),
                          key=lambda k: (self._energy[k], k))
                return self._cut_at_change(cut)
        self._segment_decided = max(self._segment_decided, upto + 1)
        return []

    def _scan(self) -> list[SegmenterEvent]:
        """Embed the window that just filled; decide the grid frame whose neighbourhood
        is now known: a change there cuts the utterance at its quietest nearby frame."""
        assert self._change is not None
        n, hop, window = len(self._frames), self._scan_hop, self._scan_window
        start = n - window
        if start < 0 or start % hop:
            return []
        self._scan_embeddings[start] = self._change.embed(np.concatenate(self._frames[start:]))
        if start - window in self._scan_embeddings:  # the distance at grid frame `start`
            self._scan_distances[start] = self._change.distance(
                self._scan_embeddings.pop(start - window), self._scan_embeddings[start])
        if not self._scan_distances:
            return []
        # after a cut the rest's first distances start later than the grid's first frame
        g = max(self._scan_next, min(self._scan_distances))
        reach = self._scan_peak * hop
        self._scan_next = g
        if g + reach not in self._scan_distances:
            return []
        self._scan_next = g + hop
        distance = self._scan_distances[g]
        near = [self._scan_distances.get(k, 0.0) for k in range(g - reach, g + reach + 1, hop)]
        self._scan_distances.pop(g - reach, None)
        if distance <= self._change.scan_distance or distance < max(near) \
                or any(abs(end - g) <= window // 2 for end in self._pause_ends):
            return []
        lo, hi = max(1, g - hop // 2), min(n - 1, g + hop // 2)
        cut = min(range(lo, hi + 1), key=lambda k: (self._energy[k], k))
        return self._cut_at_change(cut)

    def _cut_at_change(self, n_frames: int, rest_from: int | None = None
                       ) -> list[SegmenterEvent]:
        """Cut the utterance at a speaker change; the undecided candidates and the pauses
        noted after the cut carry on in the rest, re-indexed to it (the scan must not cut
        next to a pause whose candidate is still undecided)."""
        assert self._change is not None
        self._change.note_cut()
        later, ends, start = self._candidates, self._pause_ends, self._start_frame
        events = self._close(n_frames, "speaker_change", rest_from=rest_from)
        shift = self._start_frame - start
        self._candidates = [(a - shift, b - shift) for a, b in later if a > shift]
        self._pause_ends = [end - shift for end in ends if end > shift]
        return events

    def _close(self, n_frames: int, reason: str,
               rest_from: int | None = None) -> list[SegmenterEvent]:
        """Emit frames [0, n_frames) as an utterance; keep the rest (from ``rest_from``,
        default ``n_frames``) for the next one."""
        rest_from = n_frames if rest_from is None else rest_from
        frames, voiced = self._frames[rest_from:], self._voiced[rest_from:]
        speech_end = self._last_voiced(n_frames)
        n_voiced = sum(self._voiced[:n_frames])
        # At a pause the audio is that of the SpeechPaused (speech + the speculative
        # pause), whatever the hangover, the chunking or the pace; a cut inside speech keeps
        # everything before the cut.
        n_audio = n_frames if reason == "max_length" else min(
            n_frames, speech_end + self._pause_frames)
        events: list[SegmenterEvent] = []
        if n_voiced >= self._min_frames and speech_end > 0:
            events.append(
                Utterance(
                    utterance_index=self._utterance_index,
                    t_start=self._time(self._start_frame),
                    t_end=self._time(self._start_frame + speech_end),
                    audio=np.concatenate(self._frames[:n_audio]),
                    cut_reason=reason,
                    t_detected=self._time(self._frame_index + 1),
                )
            )
            self._utterance_index += 1
        energy = self._energy[rest_from:]
        rest_start = self._start_frame + rest_from
        self._in_speech = False
        self._frames, self._voiced, self._energy = [], [], []
        if frames or reason in ("max_length", "speaker_change"):
            # A cut inside speech: what follows the cut starts the next utterance at once.
            events.extend(self._open(frames, voiced, energy, rest_start))
        return events

    def _cut_long(self) -> list[SegmenterEvent]:
        return self._close(best_cut(self._voiced, self._energy), "max_length")


def best_cut(voiced: list[bool], energy: list[float]) -> int:
    """Where to cut speech that reached the limit: the number of frames to keep.

    The longest unvoiced run after the first third (the latest of equals: more speech in
    this utterance), cut after its quietest frame; with no unvoiced frame there, after the
    quietest frame of the final third (a VAD minimum rather than mid-word at the limit).
    """
    n = len(voiced)
    lo = n // 3
    best: tuple[int, int] | None = None  # (length, end) of the best unvoiced run
    i = lo
    while i < n:
        if voiced[i]:
            i += 1
            continue
        j = i
        while j < n and not voiced[j]:
            j += 1
        if best is None or j - i >= best[0]:
            best = (j - i, j)
        i = j
    if best is None:
        start, end = (2 * n) // 3, n
    else:
        start, end = best[1] - best[0], best[1]
    quietest = min(range(start, end), key=lambda k: (energy[k], -k))
    return quietest + 1
