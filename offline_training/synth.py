"""Synthetic emotional speech corpus: espeak-ng voices + sox effects, deterministic from a seed.

Four classes (angry, happy, sad, neutral). Every emotional class mixes three kinds of item:

- ``congruent``: emotional words spoken with the matching prosody;
- ``prosody``: NEUTRAL words spoken with the emotion's prosody (only audio tells);
- ``words``: emotional words spoken FLAT (neutral prosody; only the text tells).

The ``neutral`` class is neutral words with neutral prosody (kind ``neutral``). The label is
always the emotion, so a text-only model cannot separate ``prosody`` items from neutral ones
and an audio-only model cannot separate ``words`` items from neutral ones: each tops out near
75 % UA, and only a model that fuses both can approach 100 %.

Speakers are espeak-ng voices with variants (``en-us+m3``, ``en-gb-scotland+f2``, ...), each
with its own base pitch and rate; two speakers form a session (as in IEMOCAP), and each
session is cut into dialogs whose turns alternate between its speakers.

Usage: ``python -m offline_training.synth --out data/synth --speakers 12 --per-class 12``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from models.audio import SAMPLE_RATE
from offline_training.records import Utterance, write_manifest
from offline_training.synth_sentences import (
    ADJECTIVE_TEMPLATES,
    EMOTIONAL,
    EMOTIONS,
    NEUTRAL,
    TOPICS,
    VERB_TEMPLATES,
    lexicon_for_session,
)
from offline_training.tools import require_tool, run_tool

ESPEAK_VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp",
                 "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "m6", "m7")
CHANNELS = ("clean", "noisy", "telephone")
KINDS = ("congruent", "prosody", "words")


@dataclass(frozen=True)
class Prosody:
    """How an emotion is spoken: espeak-ng settings relative to the speaker, plus sox effects."""

    pitch_offset: int  # added to the speaker's espeak -p (0-99)
    pitch_range: str  # SSML prosody range: x-low, low, medium, high, x-high
    rate_factor: float  # multiplies the speaker's espeak -s (words per minute)
    amplitude: int  # espeak -a (0-200)
    effects: tuple[str, ...] = ()  # sox effects (voice quality), applied in order


PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(0, "medium", 1.0, 100),
    "angry": Prosody(6, "high", 1.15, 170, ("overdrive", "14", "treble", "+4", "gain", "-5")),
    "happy": Prosody(22, "x-high", 1.08, 125, ("treble", "+3")),
    "sad": Prosody(-14, "x-low", 0.76, 75, ("lowpass", "2800", "tremolo", "5", "25")),
}


@dataclass(frozen=True)
class Speaker:
    id: str
    session: str
    voice: str  # espeak-ng voice with variant, e.g. "en-us+f2"
    pitch: int  # base espeak -p
    rate: int  # base espeak -s


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. ``per_class`` utterances per speaker and class."""

    out_dir: Path
    seed: int = 0
    speakers: int = 12
    speakers_per_session: int = 2
    per_class: int = 12
    dialog_turns: int = 8
    channels: tuple[str, ...] = ("clean",)
    noise_snr_db: float = 15.0
    jitter: bool = True
    held_out_words: bool = True  # each session gets its own emotion words (see synth_sentences)

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or not self.channels:
            raise ValueError(f"unknown channel(s) {unknown or '(none given)'}; "
                             f"choose from {', '.join(CHANNELS)}")
        if not 1 <= self.speakers <= len(ESPEAK_VOICES) * len(VARIANTS):
            raise ValueError(f"speakers must be 1..{len(ESPEAK_VOICES) * len(VARIANTS)}, "
                             f"got {self.speakers}")
        if self.per_class < 1 or self.speakers_per_session < 1 or self.dialog_turns < 1:
            raise ValueError("per_class, speakers_per_session and dialog_turns must be >= 1")


@dataclass(frozen=True)
class Item:
    """One utterance to synthesise, before channels are applied."""

    speaker: Speaker
    label: str
    kind: str
    text: str
    cue: str  # the emotion word or phrase in the text ("" for neutral text)
    prosody_emotion: str
    pitch: int
    rate: int
    amplitude: int
    effects: tuple[str, ...] = field(default=())


def make_speakers(config: SynthConfig, rng: random.Random) -> list[Speaker]:
    speakers = []
    for index in range(config.speakers):
        voice = ESPEAK_VOICES[index % len(ESPEAK_VOICES)]
        variant = VARIANTS[(index * 3) % len(VARIANTS)] if index >= len(ESPEAK_VOICES) \
            else VARIANTS[index % len(VARIANTS)]
        session = f"S{index // config.speakers_per_session + 1:02d}"
        speakers.append(Speaker(id=f"spk{index + 1:02d}", session=session,
                                voice=f"{voice}+{variant}", pitch=rng.randint(38, 58),
                                rate=rng.randint(150, 175)))
    return speakers


def item_kinds(label: str, count: int) -> list[str]:
    """Kinds for ``count`` items of one class: neutral only, or the three kinds in turn."""
    if label == "neutral":
        return ["neutral"] * count
    return [KINDS[i % len(KINDS)] for i in range(count)]


def session_index(speaker: Speaker) -> int:
    return int(speaker.session[1:]) - 1


def emotional_sentence(label: str, rng: random.Random, session: int, sessions: int,
                       held_out_words: bool) -> tuple[str, str]:
    """(sentence, cue word): a template filled with an emotion word and a neutral topic."""
    if not held_out_words:
        sentence = rng.choice(EMOTIONAL[label])
        return sentence, sentence
    adjectives, verbs = lexicon_for_session(label, session, sessions)
    if verbs and rng.random() < len(verbs) / (len(verbs) + len(adjectives)):
        template, word = rng.choice(VERB_TEMPLATES), rng.choice(verbs)
    else:
        template, word = rng.choice(ADJECTIVE_TEMPLATES), rng.choice(adjectives)
    topic = rng.choice(TOPICS)
    return template.format(word=word, topic=topic, Topic=topic[0].upper() + topic[1:]), word


def make_item(speaker: Speaker, label: str, kind: str, rng: random.Random,
              config: SynthConfig) -> Item:
    emotional_text = kind in ("congruent", "words")
    sessions = -(-config.speakers // config.speakers_per_session)
    if emotional_text:
        text, cue = emotional_sentence(label, rng, session_index(speaker), sessions,
                                       config.held_out_words)
    else:
        text, cue = rng.choice(NEUTRAL), ""
    jitter = config.jitter
    prosody_emotion = label if kind in ("congruent", "prosody") else "neutral"
    prosody = PROSODY[prosody_emotion]
    pitch_jitter = rng.randint(-4, 4) if jitter else 0
    rate_jitter = rng.uniform(0.94, 1.06) if jitter else 1.0
    amp_jitter = rng.uniform(0.9, 1.1) if jitter else 1.0
    return Item(
        speaker=speaker, label=label, kind=kind, text=text, cue=cue,
        prosody_emotion=prosody_emotion,
        pitch=min(99, max(0, speaker.pitch + prosody.pitch_offset + pitch_jitter)),
        rate=int(speaker.rate * prosody.rate_factor * rate_jitter),
        amplitude=min(200, int(prosody.amplitude * amp_jitter)),
        effects=prosody.effects,
    )


def plan_items(config: SynthConfig, rng: random.Random) -> list[Item]:
    """All items, speaker by speaker, in a shuffled (seeded) order per speaker."""
    items: list[Item] = []
    for speaker in make_speakers(config, rng):
        own = [make_item(speaker, label, kind, rng, config)
               for label in EMOTIONS for kind in item_kinds(label, config.per_class)]
        rng.shuffle(own)
        items.extend(own)
    return items


def ssml(text: str, pitch_range: str) -> str:
    return f'<speak><prosody range="{pitch_range}">{escape(text)}</prosody></speak>'


def synthesise(item: Item, wav_path: Path, tmp_dir: Path) -> None:
    """espeak-ng -> raw 22.05 kHz wav -> sox effects -> 16 kHz mono 16-bit wav."""
    raw = tmp_dir / "raw.wav"
    run_tool(["espeak-ng", "-m", "-v", item.speaker.voice, "-p", str(item.pitch),
              "-s", str(item.rate), "-a", str(item.amplitude), "-w", str(raw),
              ssml(item.text, PROSODY[item.prosody_emotion].pitch_range)])
    run_tool(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
              str(wav_path), *item.effects])


def add_noise(wav_path: Path, snr_db: float, seed: int) -> None:
    audio, rate = sf.read(wav_path, dtype="float32")
    noise_rng = np.random.default_rng(seed)
    power = float(np.mean(audio**2)) + 1e-12
    noise = noise_rng.standard_normal(len(audio)).astype(np.float32)
    noise *= np.sqrt(power / 10 ** (snr_db / 10))
    sf.write(wav_path, np.clip(audio + noise, -1.0, 1.0), rate, subtype="PCM_16")


def telephone(wav_path: Path, tmp_dir: Path) -> None:
    """Band-limit to 300-3400 Hz, encode as 8 kHz mu-law, decode back to 16 kHz."""
    narrow = tmp_dir / "narrow.wav"
    run_tool(["sox", "-D", str(wav_path), "-r", "8000", "-e", "mu-law", "-b", "8", str(narrow),
              "sinc", "300-3400"])
    run_tool(["sox", "-D", str(narrow), "-r", str(SAMPLE_RATE), "-e", "signed", "-b", "16",
              str(wav_path)])


def render(item: Item, channel: str, wav_path: Path, tmp_dir: Path, noise_seed: int,
           snr_db: float) -> None:
    synthesise(item, wav_path, tmp_dir)
    if channel == "noisy":
        add_noise(wav_path, snr_db, noise_seed)
    elif channel == "telephone":
        telephone(wav_path, tmp_dir)


def assign_dialogs(items: Sequence[Item], turns: int) -> list[tuple[str, int]]:
    """(dialog_id, order) per item: a session's items interleaved across its speakers."""
    by_session: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_session.setdefault(item.speaker.session, []).append(index)
    result: list[tuple[str, int]] = [("", 0)] * len(items)
    for session, indices in by_session.items():
        per_speaker: dict[str, list[int]] = {}
        for index in indices:
            per_speaker.setdefault(items[index].speaker.id, []).append(index)
        queues = list(per_speaker.values())
        interleaved = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        for position, index in enumerate(interleaved):
            result[index] = (f"{session}_d{position // turns + 1:02d}", position % turns)
    return result


def generate(config: SynthConfig, progress: bool = True) -> list[Utterance]:
    """Write wavs under ``config.out_dir/wav`` and ``manifest.jsonl``; return the utterances."""
    require_tool("espeak-ng")
    require_tool("sox")
    from tqdm import tqdm

    rng = random.Random(config.seed)
    items = plan_items(config, rng)
    dialogs = assign_dialogs(items, config.dialog_turns)
    wav_dir = config.out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    jobs = [(i, ch) for ch in config.channels for i in range(len(items))]
    with tempfile.TemporaryDirectory() as tmp:
        for index, channel in tqdm(jobs, desc="synthesising", disable=not progress):
            item = items[index]
            dialog_id, order = dialogs[index]
            utt_id = f"{item.speaker.id}_{index:05d}"
            if len(config.channels) > 1:
                utt_id = f"{utt_id}_{channel}"
            wav_path = wav_dir / f"{utt_id}.wav"
            render(item, channel, wav_path, Path(tmp), config.seed * 1_000_003 + index,
                   config.noise_snr_db)
            utterances.append(Utterance(
                id=utt_id, path=str(wav_path.relative_to(config.out_dir)), text=item.text,
                label=item.label, speaker=item.speaker.id, session=item.speaker.session,
                dialog_id=dialog_id, order=order, kind=item.kind,
                extra={"channel": channel, "voice": item.speaker.voice,
                       "prosody": item.prosody_emotion, "cue": item.cue},
            ))
    write_manifest(utterances, config.out_dir / "manifest.jsonl")
    return utterances


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory (gets wav/ and manifest.jsonl)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--speakers", type=int, default=12,
                        help="number of espeak-ng voices used as speakers (default 12)")
    parser.add_argument("--speakers-per-session", type=int, default=2,
                        help="speakers per session, for leave-one-session-out (default 2)")
    parser.add_argument("--per-class", type=int, default=12,
                        help="utterances per speaker and class (default 12; total = "
                             "speakers x 4 x per-class x channels)")
    parser.add_argument("--channels", default="clean",
                        help="comma list of renderings per utterance: clean, noisy, telephone "
                             "(default clean)")
    parser.add_argument("--noise-snr-db", type=float, default=15.0,
                        help="signal-to-noise ratio of the noisy channel (default 15)")
    parser.add_argument("--shared-words", action="store_true",
                        help="use the fixed emotional sentences in every session instead of "
                             "session-specific emotion words")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(out_dir=args.out, seed=args.seed, speakers=args.speakers,
                       speakers_per_session=args.speakers_per_session,
                       per_class=args.per_class,
                       channels=tuple(c.strip() for c in args.channels.split(",") if c.strip()),
                       noise_snr_db=args.noise_snr_db, held_out_words=not args.shared_words)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offline_training.synth",
        description="Generate the synthetic emotional speech corpus (espeak-ng + sox).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    utterances = generate(config_from_args(args))
    print(f"wrote {len(utterances)} utterances to {args.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
