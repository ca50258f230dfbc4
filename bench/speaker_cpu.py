"""The speaker path's CPU per audio second (issue 29): CAM++ in torch against onnxruntime.

The conversations of ``bench/conversations.py --speakers`` (6 mixed-sex RAVDESS pairs, 16
turns each, the same seed and gaps; clips drawn without its ASR, so a clip its word
alignment rejects may differ) are cut by the segmenter with the default speakers config
(CAM++, scan every 0.2 s), and every clip the speaker path embeds is recorded: scan
windows, both sides of each pause decision, each utterance's label. The recorded clips are
then embedded again by each network, alternating clip by clip in one process so that load
from other jobs falls on both alike; the figure is process CPU time (one thread each)
per second of conversation audio, and the cosines between the two give the parity.

    .venv/bin/python bench/speaker_cpu.py --out bench/results/speaker_cpu.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from conversations import PAIRS, RAVDESS, assemble, ravdess_pieces, report, segment  # noqa: E402

from models.audio import SAMPLE_RATE  # noqa: E402
from models.speaker_encoder import SpeakerEncoder  # noqa: E402
from streamer.core.config import SegmenterConfig, SpeakersConfig  # noqa: E402
from streamer.engine.speakers import ChannelSpeakers  # noqa: E402


class Recording:
    """The encoder, noting every clip it is asked to embed."""

    def __init__(self, encoder: SpeakerEncoder) -> None:
        self._encoder = encoder
        self.clips: list[np.ndarray] = []

    def embed(self, audio: np.ndarray) -> np.ndarray:
        self.clips.append(np.array(audio, np.float32))
        return self._encoder.embed(audio)


def mixed_conversations(conversations: int, clips: int) -> list[np.ndarray]:
    """``bench/conversations.py --speakers``'s mixed-sex conversations: its pairs, seed and
    draw order (clips drawn without its ASR)."""
    rng = random.Random(11)
    mixes = []
    for c in range(conversations):
        pieces = ravdess_pieces(None, RAVDESS, PAIRS["mixed"][c % 8], clips, rng)
        gaps = [rng.uniform(-0.2, 0.6) for _ in pieces]
        mixes.append(assemble(pieces, gaps)[0])
    return mixes


def recorded_clips(encoder: SpeakerEncoder, mixes: list[np.ndarray],
                   speakers: SpeakersConfig) -> tuple[list[np.ndarray], int]:
    """Every clip the speaker path embeds on ``mixes`` (scan windows, both sides of each
    pause decision, each utterance's label), and the number of scan windows."""
    recording, scans = Recording(encoder), 0
    for mix in mixes:
        channel = ChannelSpeakers(recording, speakers)  # type: ignore[arg-type]
        utterances, _, _ = segment(mix, SegmenterConfig(), channel)
        for u in utterances:
            channel.label(u.audio)
        scans += channel.stats.scans
    return recording.clips, scans


def torch_embedder() -> Any:
    """CAM++'s torch network as the encoder ran it before onnxruntime (one thread)."""
    import torch

    from models.campplus import Fbank, load_campplus
    from models.speaker_encoder import PACKAGED_CAMPPLUS, resolve_speaker_weights

    model, fbank = load_campplus(resolve_speaker_weights(PACKAGED_CAMPPLUS)), Fbank()

    def embed(audio: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            vector = model(fbank(torch.from_numpy(audio))[None])[0].numpy()
        return vector / max(float(np.linalg.norm(vector)), 1e-9)
    return embed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--clips", type=int, default=16, help="turns per conversation")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    speakers = SpeakersConfig(enabled=True)
    encoder = SpeakerEncoder(speakers.encoder)
    mixes = mixed_conversations(args.conversations, args.clips)
    audio_s = sum(len(m) for m in mixes) / SAMPLE_RATE
    clips, _ = recorded_clips(encoder, mixes, speakers)
    old = torch_embedder()
    for clip in clips[:5]:  # warm both
        old(clip), encoder.embed(clip)
    cpu = {"torch": 0.0, "onnxruntime": 0.0}
    cosines = []
    for clip in clips:
        started = time.process_time()
        a = old(clip)
        cpu["torch"] += time.process_time() - started
        started = time.process_time()
        b = encoder.embed(clip)
        cpu["onnxruntime"] += time.process_time() - started
        cosines.append(float(a @ b))
    lengths = np.array([len(c) for c in clips]) / SAMPLE_RATE
    results = {
        "conversations": args.conversations, "audio_s": round(audio_s, 1),
        "clips_embedded": len(clips), "clip_s_p50": round(float(np.median(lengths)), 2),
        "clip_s_embedded_per_audio_s": round(float(lengths.sum()) / audio_s, 2),
        "cpu_ms_per_audio_s": {k: round(1000 * v / audio_s, 1) for k, v in cpu.items()},
        "ratio": round(cpu["onnxruntime"] / cpu["torch"], 3),
        "cosine_min": round(min(cosines), 7)}
    return report(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
