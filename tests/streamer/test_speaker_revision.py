"""Speaker label revision (issue 29): ``streamer.engine.speaker_clusters.SpeakerReviser`` behind
``SpeakerTracker.label``, on synthetic embeddings (directions in a plane, a little noise in
the other dimensions), the ``speaker.revised`` event, and real voices (Resemblyzer on
RAVDESS actors 01 and 02, as tests/streamer/test_speakers.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from models.audio import SAMPLE_RATE
from models.speaker_encoder import PACKAGED_RESEMBLYZER, SpeakerEncoder
from streamer.audio.audio_io import read_audio_file
from streamer.core import events
from streamer.core.config import AppConfig, ConfigError, SpeakersConfig, load_config
from streamer.engine.speaker_clusters import (
    Anchor,
    Revision,
    SpeakerReviser,
    agglomerate,
    best_assignment,
)
from streamer.engine.speakers import ChannelSpeakers, Party, SpeakerTracker
from tests.streamer.test_speakers import RESEMBLYZER, RESEMBLYZER_SETTINGS

# Speaker A's utterances point at 0 degrees, B's at 70 (cosine 0.34, under the 0.6
# threshold); an utterance of A at 30 degrees has cosine 0.87 with A and 0.77 with B.
A, B, A_LEANING_B = 0.0, 70.0, 30.0


def at(degrees: float, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A unit embedding at ``degrees`` in the first plane of 8 dimensions."""
    v = np.zeros(8)
    v[0], v[1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    v[2:] += noise * np.random.default_rng(seed).standard_normal(6)
    return v / np.linalg.norm(v)


def run(tracker: SpeakerTracker, angles: Sequence[float]) -> tuple[list[str], list[Revision]]:
    """Each utterance's label as published, and every revision, in order."""
    labels, revisions = [], []
    for key, degrees in enumerate(angles):
        label, revised = tracker.label(at(degrees, seed=key), key)
        labels.append(label)
        revisions += revised
    return labels, revisions


def applied(labels: list[str], revisions: list[Revision]) -> list[str]:
    """The labels a dashboard shows after applying the revisions."""
    out = list(labels)
    for revision in revisions:
        assert out[revision.key] == revision.speaker  # the old label is the one shown
        out[revision.key] = revision.revised
    return out


# A's first utterance leans towards B: B's utterances join its label, and A's then get
# another one. Looking back, the first utterance is A's.
MISLABELLED = [A_LEANING_B, B, B, B, A, A, A, A, B, A]


def test_a_mislabelled_first_utterance_is_revised() -> None:
    causal, none = run(SpeakerTracker(0.6, 8), MISLABELLED)
    assert causal == ["S1", "S1", "S1", "S1", "S2", "S2", "S2", "S2", "S1", "S2"]
    assert none == []
    tracker = SpeakerTracker(0.6, 8, revise_window=64)
    labels, revisions = run(tracker, MISLABELLED)
    # revised when A's first clear utterance arrives (key 4); nothing else changes
    assert revisions == [Revision(0, "S1", "S2")]
    assert labels == causal  # the labels as published: the revision is a separate event
    assert applied(labels, revisions) == ["S2"] + ["S1"] * 3 + ["S2"] * 4 + ["S1", "S2"]
    assert tracker.speakers == 2
    # the revised embedding moved to S2's mean: an utterance like it is now S2's
    assert tracker.label(at(A_LEANING_B + 5, seed=99), 10) == ("S2", [])


def test_nothing_changes_when_the_tracker_was_right() -> None:
    angles = [A, B, A, A, B, B, A, B] * 4
    causal, _ = run(SpeakerTracker(0.6, 8), angles)
    labels, revisions = run(SpeakerTracker(0.6, 8, revise_window=64), angles)
    assert revisions == [] and labels == causal
    assert set(labels) == {"S1", "S2"}


def test_split_speaker_is_merged_and_its_label_dropped() -> None:
    """One voice given two labels (its first utterances far from its later mean) becomes one
    label; the emptied label is not given again."""
    angles = [A, A + 55, A + 55, A + 25, A + 25, A + 25, A + 25]
    causal, _ = run(SpeakerTracker(0.6, 8), angles)
    assert len(set(causal)) == 2
    tracker = SpeakerTracker(0.6, 8, revise_window=64)
    labels, revisions = run(tracker, angles)
    assert revisions and len(set(applied(labels, revisions))) == 1
    assert tracker.speakers == 1
    dropped = {r.speaker for r in revisions} - set(applied(labels, revisions))
    new, _ = tracker.label(at(-90, seed=50), 100)  # a new voice: a new number
    assert new not in dropped and new not in applied(labels, revisions)


def test_enrolled_names_never_change() -> None:
    """An enrolled party's utterances keep its name; an S-labelled utterance that clusters
    with the party is revised to the name; two parties are never merged."""
    agent = Party("agent", at(A, noise=0.0), 4)
    coach = Party("coach", at(A + 40, noise=0.0), 1)  # cosine 0.77 with the agent
    tracker = SpeakerTracker(0.6, 4, [agent, coach], revise_window=64)
    angles = [A + 20, A + 20, A + 60, A + 5, B + 30, A + 45, A + 2, A + 38]
    labels, revisions = run(tracker, angles)
    shown = applied(labels, revisions)
    for label, now in zip(labels, shown, strict=True):
        if label in ("agent", "coach"):
            assert now == label  # never revised
    assert all(r.speaker not in ("agent", "coach") for r in revisions)
    assert tracker.speakers <= 4
    # directly: an utterance labelled with a name stays, even where its voice is elsewhere
    reviser = SpeakerReviser(16, 0.6, 3, [Anchor("agent", at(A, noise=0.0), 4.0)])
    totals: dict[str, int] = {}
    steps = [("agent", B), ("S1", B), ("S1", B), ("S1", B), ("S2", A + 10)]
    out: list[Revision] = []
    for key, (label, degrees) in enumerate(steps):
        totals[label] = totals.get(label, 0) + 1
        out += reviser.add(key, at(degrees, seed=key), label, totals, lambda: "S9")
    assert out == [Revision(4, "S2", "agent")]  # the newest, to the party it is close to


def test_the_window_is_bounded() -> None:
    """Only the last ``revise_window`` utterances are kept and revised."""
    tracker = SpeakerTracker(0.6, 8, revise_window=3)
    labels, revisions = run(tracker, MISLABELLED)
    assert all(r.key >= 1 for r in revisions)  # utterance 0 had left the window
    assert applied(labels, revisions)[0] == "S1"
    reviser = SpeakerReviser(4, 0.6, 8)
    for key in range(20):
        reviser.add(key, at(A, seed=key), "S1", {"S1": key + 1}, lambda: "S2")
    assert len(reviser) == 4 and reviser.labels == {"S1": 4}


def test_max_speakers_is_respected() -> None:
    angles = [0, 60, 120, 180, 240, 300] * 3  # six voices, cosine 0.5 or less apart
    tracker = SpeakerTracker(0.6, 3, revise_window=64)
    labels, revisions = run(tracker, angles)
    assert len(set(applied(labels, revisions))) <= 3
    assert tracker.speakers <= 3
    sums = np.stack([at(a, seed=i) for i, a in enumerate(angles)])
    for cap in (1, 2, 3, 5):
        assert max(agglomerate(sums, 0.6, cap)) + 1 <= cap


def test_one_label_per_step_and_no_renaming() -> None:
    """A clustering that finds the same groups under other names revises nothing; one
    step gives each utterance one label; a later step may revise again (here B's
    utterances come between A and B, and the threshold makes one voice of all)."""
    reviser = SpeakerReviser(64, 0.6, 8)
    totals: dict[str, int] = {}
    for key, (label, degrees) in enumerate([("S2", A), ("S1", B), ("S2", A), ("S1", B)]):
        totals[label] = totals.get(label, 0) + 1
        assert reviser.add(key, at(degrees, seed=key), label, totals, lambda: "S9") == []
    tracker = SpeakerTracker(0.6, 8, revise_window=64)
    labels, revisions = run(tracker, [*MISLABELLED[:5], 40, 40, 40, 40, 40])
    assert revisions[0] == Revision(0, "S1", "S2")
    steps = [tracker.label(at(40, seed=k), k)[1] for k in range(10, 13)]
    for step in steps:
        assert len({r.key for r in step}) == len(step)
    shown = applied(labels, revisions + [r for step in steps for r in step])
    assert set(shown) == {"S1"} and tracker.speakers == 1


def test_agglomerate_keeps_groups_apart() -> None:
    sums = np.stack([at(0, noise=0.0), at(10, noise=0.0), at(3, noise=0.0)])
    assert agglomerate(sums, 0.6, 8) == [0, 0, 0]
    assert agglomerate(sums, 0.6, 8, [0, 1, None]) == [0, 1, 0]
    assert agglomerate(np.zeros((0, 8)), 0.6, 2) == []


def test_best_assignment_is_the_best() -> None:
    rng = np.random.default_rng(3)
    for rows, cols in [(1, 1), (3, 3), (2, 4), (5, 2), (4, 4), (6, 5)]:
        score = rng.integers(0, 6, (rows, cols)).astype(float)
        pairs = best_assignment(score)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        if rows <= cols:
            best = max(sum(score[i, p[i]] for i in range(rows))
                       for p in itertools.permutations(range(cols), rows))
        else:
            best = max(sum(score[p[j], j] for j in range(cols))
                       for p in itertools.permutations(range(rows), cols))
        assert sum(score[r, c] for r, c in pairs) == best
    assert best_assignment(np.zeros((0, 3))) == []


def test_speaker_revised_event_follows_the_schema() -> None:
    event = events.speaker_revised("call-1", "mono", [(0, "S1", "S2"), (3, "S3", "agent")])
    events.validate_event(event)
    assert event["type"] == "speaker.revised" and event["schema"] == events.SCHEMA_VERSION
    assert event["revisions"] == [
        {"utterance_id": "call-1/mono/0", "speaker": "S1", "revised": "S2"},
        {"utterance_id": "call-1/mono/3", "speaker": "S3", "revised": "agent"}]
    for bad in ({**event, "revisions": []},
                {**event, "revisions": [{"utterance_id": "x", "speaker": "S1"}]},
                {**event, "revisions": [{"utterance_id": "x", "speaker": "S1",
                                         "revised": "S 2"}]}):
        with pytest.raises(jsonschema.ValidationError):
            events.validate_event(bad)


def test_revise_window_setting() -> None:
    assert SpeakersConfig().revise_window == 0  # off by default
    config = load_config(None, ["speakers.revise_window=64"])
    assert isinstance(config, AppConfig) and config.speakers.revise_window == 64
    for bad in ("-1", "1001"):
        with pytest.raises(ConfigError, match="revise_window"):
            load_config(None, [f"speakers.revise_window={bad}"])


RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
# Five takes (actor 02, 01, 02, 01, 02; calm, neutral, sad, sad, happy): the tracker
# gives actor 01's neutral take the label of actor 02's calm one (S1); when actor 02's sad
# take arrives, the clustering of the three puts it apart, with a label of its own (S2),
# the label actor 01's next take then gets.
TAKES = ("Actor_02/03-01-02-02-02-01-02", "Actor_01/03-01-01-01-01-01-01",
         "Actor_02/03-01-04-02-01-01-02", "Actor_01/03-01-04-02-02-01-01",
         "Actor_02/03-01-03-02-01-01-02")
needs_ravdess = pytest.mark.needs_corpus("ravdess")


def take(name: str) -> np.ndarray:
    audio = read_audio_file(RAVDESS / f"{name}.flac")
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0]:loud[-1] + 1]


@needs_ravdess
def test_real_voices_are_revised() -> None:
    encoder = SpeakerEncoder(PACKAGED_RESEMBLYZER)
    causal = ChannelSpeakers(encoder, SpeakersConfig(enabled=True, **RESEMBLYZER))
    assert [causal.label(take(name)) for name in TAKES] == ["S1", "S1", "S1", "S2", "S1"]
    speakers = ChannelSpeakers(encoder, SpeakersConfig(enabled=True, revise_window=64,
                                                       **RESEMBLYZER))
    labelled = [speakers.label_utterance(take(name), index)
                for index, name in enumerate(TAKES)]
    assert [u.speaker for u in labelled] == ["S1", "S1", "S1", "S2", "S1"]
    assert [u.revisions for u in labelled] == [(), (), (Revision(1, "S1", "S2"),), (), ()]
    assert speakers.stats.revisions == 1 and speakers.speakers == 2
    event = events.speaker_revised("talk", "mono", [(r.key, r.speaker, r.revised)
                                                    for r in labelled[2].revisions])
    events.validate_event(event)


# Actor 01 angry, then actor 02 angry, sad, sad, calm: the tracker gives all five S1;
# revision sets actor 01's take apart.
TALK = ("Actor_01/03-01-05-02-02-01-01", "Actor_02/03-01-05-02-02-01-02",
        "Actor_02/03-01-04-02-01-01-02", "Actor_02/03-01-04-02-02-01-02",
        "Actor_02/03-01-02-02-02-01-02")


@pytest.mark.slow
@needs_ravdess
def test_run_publishes_speaker_revised(tmp_path: Path) -> None:
    """``emotion-stream run --fast`` on five takes, 1 s apart, with revision on: valid
    ``speaker.revised`` events, each right after an ``utterance.emotion``, naming utterances
    published before with the speaker shown until then; applied, they set actor 01 apart."""
    from streamer.apps.pipeline import run_pipeline
    from streamer.engine.loading import load_models
    from streamer.sources.local import FileSource

    silence = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([piece for name in TALK for piece in (silence, take(name))]
                           + [silence])
    path = tmp_path / "talk.wav"
    sf.write(path, audio, SAMPLE_RATE)
    config = load_config(None, [f"source.path={path}", "source.realtime=false",
                                "websocket.enabled=false", "stdout.enabled=false",
                                f"jsonl.path={tmp_path / 'events.jsonl'}",
                                "speakers.enabled=true", "speakers.revise_window=64",
                                *RESEMBLYZER_SETTINGS])
    assert isinstance(config, AppConfig)
    asyncio.run(run_pipeline(config, FileSource(config.source), load_models(config)))
    published = [json.loads(line)
                 for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    for event in published:
        events.validate_event(event)
    kinds = [e["type"] for e in published]
    assert kinds.count("utterance.emotion") == 5
    revised = [i for i, kind in enumerate(kinds) if kind == "speaker.revised"]
    assert revised, [e.get("speaker") for e in published]
    shown: dict[str, str] = {}
    for i, event in enumerate(published):
        if event["type"] == "utterance.emotion":
            shown[event["utterance_id"]] = event["speaker"]
        elif event["type"] == "speaker.revised":
            assert published[i - 1]["type"] == "utterance.emotion"
            for revision in event["revisions"]:
                assert shown[revision["utterance_id"]] == revision["speaker"]
                shown[revision["utterance_id"]] = revision["revised"]
    first, *rest = shown.values()
    assert len(shown) == 5 and len(set(rest)) == 1 and first not in rest
