"""Prototype (issue 16): partial fine-tuning of tiny.en's last encoder layer on RAVDESS.

8 classes, one EmoBox fold at a time. Input: the cached hidden state 3 (the output of
layer 3) of bench/experiments/recipe_explore.py's frames, 4x average-pooled
(/tmp/recipe/frames-pool4.npz; run ``bench/experiments/recipe_explore.py extract``
first). Trained: a copy of layer 4 and the final layer norm (pretrained init, AdamW at
``--lr``), then the masked mean + std pooling of [frozen states 0-3, fine-tuned state 4],
standardised (training statistics), dropout 0.3 and a linear layer (lr 1e-3), with label
smoothing 0.1.
The kept epoch is the best UA on the next fold's actors, held out of training (never the
test fold). Exploratory: docs/recipe_explore.md.

    .venv/bin/python bench/experiments/partial_finetune.py --fold 1 --lr 2e-5 --epochs 10
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.layer_probe import FOLDS, RAVDESS, ravdess_clips  # noqa: E402
from models.encoders.whisper_torch import load_whisper_torch  # noqa: E402
from models.heads.linear_probe import masked_mean_std  # noqa: E402

FRAMES = Path("/tmp/recipe/frames-pool4.npz")
TOP_INPUT = 3  # hidden state fed to the fine-tuned layer (the output of layer 3)


class TopLayerProbe(nn.Module):
    """Frozen pooled lower states + a fine-tuned copy of the last layer -> linear."""

    def __init__(self, encoder: nn.Module, frozen_dim: int, classes: int) -> None:
        super().__init__()
        self.layer = copy.deepcopy(encoder.layers[-1])  # type: ignore[index]
        self.norm = copy.deepcopy(encoder.norm)
        dim = frozen_dim + 2 * self.norm.normalized_shape[0]
        self.drop = nn.Dropout(0.3)
        self.classifier = nn.Linear(dim, classes)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def top(self, h: Tensor, mask: Tensor) -> Tensor:
        """The pretrained layer's computation, with padding masked out of the attention."""
        return masked_mean_std(self.norm(self.layer(h, mask)), mask)

    def features(self, frozen: Tensor, h: Tensor, mask: Tensor) -> Tensor:
        return torch.cat([frozen, self.top(h, mask)], -1)

    def forward(self, frozen: Tensor, h: Tensor, mask: Tensor) -> Tensor:
        z = (self.features(frozen, h, mask) - self.mean) / self.std
        return self.classifier(self.drop(z))


def main() -> None:
    from sklearn.metrics import balanced_accuracy_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", type=int, default=1, choices=range(1, 7))
    parser.add_argument("--lr", type=float, default=2e-5, help="the fine-tuned layer's lr")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if not FRAMES.is_file():
        sys.exit(f"{FRAMES} not found: run bench/experiments/recipe_explore.py extract")
    data = np.load(FRAMES)
    x, lengths = torch.as_tensor(data["x"]), torch.as_tensor(data["lengths"])
    clips = ravdess_clips(RAVDESS)
    y = np.array([c.label for c in clips])
    actors = np.array([c.actor for c in clips])
    test = np.isin(actors, FOLDS[args.fold - 1])
    valid = np.isin(actors, FOLDS[args.fold % len(FOLDS)])
    train = np.where(~test & ~valid)[0]
    mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    frozen = torch.cat([masked_mean_std(x[:, :, i].float(), mask) for i in range(TOP_INPUT + 1)],
                       -1)
    model = TopLayerProbe(load_whisper_torch("packaged:tiny.en"), frozen.shape[1], 8)

    def batches(index: np.ndarray, size: int) -> list[Tensor]:
        return [torch.as_tensor(index[i:i + size]) for i in range(0, len(index), size)]

    def inputs(b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return frozen[b], x[b, :, TOP_INPUT].float(), mask[b]

    with torch.no_grad():  # standardise with the training part's statistics
        z = torch.cat([model.features(*inputs(b)) for b in batches(train, 64)])
        model.mean.copy_(z.mean(0))
        model.std.copy_(z.std(0) + 1e-3)
    optimizer = torch.optim.AdamW(
        [{"params": [*model.layer.parameters(), *model.norm.parameters()], "lr": args.lr},
         {"params": model.classifier.parameters(), "lr": 1e-3}], weight_decay=1e-2)

    def ua(part: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(*inputs(b)) for b in batches(np.where(part)[0], 64)])
        return float(balanced_accuracy_score(y[part], predicted.argmax(1).numpy()))

    best = (-1.0, 0.0, 0)  # validation UA, test UA, epoch
    for epoch in range(1, args.epochs + 1):
        model.train()
        started, total = time.time(), 0.0
        for b in batches(np.random.default_rng(epoch).permutation(train), 16):
            loss = F.cross_entropy(model(*inputs(b)), torch.as_tensor(y[b.numpy()]),
                                   label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(b)
        valid_ua, test_ua = ua(valid), ua(test)
        if valid_ua > best[0]:
            best = (valid_ua, test_ua, epoch)
        print(f"fold {args.fold} epoch {epoch}: loss {total / len(train):.3f}, validation UA "
              f"{valid_ua:.3f}, test UA {test_ua:.3f} ({time.time() - started:.0f} s)",
              flush=True)
    print(f"fold {args.fold}: kept epoch {best[2]} (validation UA {best[0]:.3f}), "
          f"test UA {best[1]:.3f}")


if __name__ == "__main__":
    main()
