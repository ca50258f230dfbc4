"""Shared fixtures: real Mosquitto brokers (``harness.broker``), loaded models, tiny encoders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[type[Broker]]:
    made: list[Broker] = []

    class _Broker(Broker):
        def __init__(self, port: int | None = None) -> None:
            super().__init__(tmp_path, port)
            made.append(self)

    yield _Broker
    for b in made:
        b.stop()


@pytest.fixture(scope="session")
def whisper_model():  # type: ignore[no-untyped-def]
    from models.encoders.whisper import load_whisper

    return load_whisper("packaged:tiny.en", cpu_threads=2)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny test models run fastest on one thread; loading CTranslate2 (Whisper) raises the
    shared OpenMP thread count, which made later small-model tests several times slower."""
    import torch

    torch.set_num_threads(1)
    yield


# Tiny randomly initialised encoders saved to temp directories (nothing is downloaded).
TINY_TEXT_DIM = 32


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d BERT with the packaged MiniLM tokenizer, saved with save_pretrained."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.paths import DEFAULT_TEXT_ENCODER, resolve_hf

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_hf(DEFAULT_TEXT_ENCODER))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY_TEXT_DIM,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`serve` keeps the emotion model's deployment statistics in $XDG_STATE_HOME
    (emotion.adaptation_state: auto): the tests' go to a directory of their own, never the
    user's, and every test session starts from the training population."""
    import os

    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state_home"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs_corpus("ravdess")``: the test fails, loudly, when the shared
    corpus is missing; it never skips (CI must not pass a test that did not run)."""
    for marker in item.iter_markers(name="needs_corpus"):
        for name in marker.args:
            if not (SHARED_CORPORA / name).is_dir():
                pytest.fail(f"this test needs the shared corpus {SHARED_CORPORA / name}; put "
                            "the corpora there (see shared/corpora/README.md)", pytrace=False)

