"""Training recipes on FROZEN Whisper tiny.en features, RAVDESS 8-class, EmoBox folds.

Experiments (issue 16; results merged into bench/results/recipe_explore.json by name):

  extract          all 5 hidden states of every clip (models/encoders/whisper_torch.py, 10 s
                   window), float16, cached as /tmp/recipe/frames.npy (+ -offsets.npy);
                   --speed F caches a resampling speed-perturbed copy
  prosody-extract  models.encoders.prosody.functionals of every clip -> /tmp/recipe/prosody.npy
  head             frame-level head: per-layer standardisation fitted on the training part,
                   learned softmax layer weights (SUPERB), dropout, Linear(384, proj) + GELU,
                   attentive statistics pooling, LayerNorm, dropout, Linear(2 proj, 8);
                   AdamW + warm-up/cosine, label smoothing, frame dropout, time masking and
                   channel masking. Kept epoch = best UA on a validation group of 4 TRAINING
                   actors (never the test fold); --seeds N members averaged (--cv-bag: member j
                   validates on the j-th training group). --set spknorm=1 standardises frames
                   per actor (transductive: uses the test actors' unlabelled clips).
                   --prosody adds the prosody functionals to the pooled vector.
  probe            logistic regression on pooled features (/tmp/layer-probe npz), C by UA over
                   4 inner GroupKFold folds of the training actors; --features
                   concat|layerI[+prosody][+spknorm]
  ensemble         mean of saved test probabilities of earlier experiments (--members)

    .venv/bin/python bench/experiments/recipe_explore.py extract
    .venv/bin/python bench/experiments/recipe_explore.py head --seeds 1 --name head-s1 \
        --set epochs=25
    .venv/bin/python bench/experiments/recipe_explore.py probe --features concat+spknorm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RAVDESS = Path("/work/shared/corpora/ravdess")
CACHE = Path("/tmp/recipe")
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FOLDS = ((1, 11, 20, 21), (4, 10, 12, 14), (8, 9, 19, 23), (3, 5, 7, 24), (2, 15, 16, 18),
         (6, 13, 17, 22))


def ravdess_clips(root: Path = RAVDESS) -> tuple[list[Path], np.ndarray, np.ndarray]:
    paths = sorted(root.glob("Actor_*/*.flac"))
    labels = np.array([int(p.stem.split("-")[2]) - 1 for p in paths])
    actors = np.array([int(p.stem.split("-")[6]) for p in paths])
    if len(paths) != 1440:
        raise ValueError(f"expected 1440 RAVDESS clips, found {len(paths)}")
    return paths, labels, actors


def _speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Resampling speed perturbation (tempo and pitch move together, as sox 'speed')."""
    if factor == 1.0:
        return audio
    n = int(round(len(audio) / factor))
    return np.interp(np.arange(n) * factor, np.arange(len(audio)), audio).astype(np.float32)


def frames_file(speed: float) -> Path:
    return CACHE / ("frames" if speed == 1.0 else f"frames-speed{speed:g}")


def extract_frames(speed: float = 1.0, batch_size: int = 16) -> None:
    """All hidden states (5, T, 384) of every clip, float16, concatenated over clips along T:
    <file>.npy (sum T, 5, 384) + <file>-offsets.npy (N + 1,)."""
    import soundfile as sf
    import torch

    from models.encoders.whisper_torch import WhisperTorchEncoder

    out = frames_file(speed)
    if Path(str(out) + ".npy").is_file():
        print(f"{out}.npy cached", flush=True)
        return
    paths, _, _ = ravdess_clips()
    torch.set_num_threads(2)
    encoder = WhisperTorchEncoder.load("packaged:tiny.en")
    chunks, offsets = [], [0]
    start = time.time()
    for i in range(0, len(paths), batch_size):
        audios = []
        for p in paths[i: i + batch_size]:
            audio, rate = sf.read(p, dtype="float32")
            assert rate == 16000 and audio.ndim == 1, p
            audios.append(_speed(audio, speed))
        for enc in encoder.encode_batch(audios, batch_size=batch_size):
            hs = enc.hidden_states.transpose(1, 0, 2).astype(np.float16)  # (T, 5, 384)
            chunks.append(hs)
            offsets.append(offsets[-1] + hs.shape[0])
        done = min(i + batch_size, len(paths))
        el = time.time() - start
        print(f"speed {speed}: {done}/{len(paths)} {el / done:.2f} s/clip "
              f"ETA {el / done * (len(paths) - done):.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(str(out) + "-offsets.npy", np.array(offsets, dtype=np.int64))
    np.save(str(out) + ".tmp.npy", np.concatenate(chunks))
    Path(str(out) + ".tmp.npy").rename(str(out) + ".npy")
    print(f"wrote {out}.npy in {time.time() - start:.0f} s", flush=True)


# --- data -------------------------------------------------------------------------------------


def load_frames(speed: float = 1.0, pool: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(N, Tmax, 5, 384) float16 hidden states, frames average-pooled by ``pool`` (50 Hz ->
    50/pool Hz), zero-padded; and (N,) lengths. Cached per (speed, pool)."""
    f = Path(f"{frames_file(speed)}-pool{pool}.npz")
    if f.is_file():
        d = np.load(f)
        return d["x"], d["lengths"]
    frames = np.load(str(frames_file(speed)) + ".npy", mmap_mode="r")
    offsets = np.load(str(frames_file(speed)) + "-offsets.npy")
    n = len(offsets) - 1
    lengths = np.array([-(-(offsets[i + 1] - offsets[i]) // pool) for i in range(n)])
    x = np.zeros((n, lengths.max(), 5, 384), dtype=np.float16)
    for i in range(n):
        clip = np.asarray(frames[offsets[i]: offsets[i + 1]], dtype=np.float32)
        t = clip.shape[0]
        pad = (-t) % pool
        if pad:  # repeat the last frame so the last window is a plain mean
            clip = np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])
        x[i, : lengths[i]] = clip.reshape(-1, pool, 5, 384).mean(axis=1)
    np.savez(f, x=x, lengths=lengths)
    return x, lengths


def prosody_features() -> np.ndarray:
    """(N, F) prosody functionals of every clip (models.encoders.prosody), cached."""
    f = CACHE / "prosody.npy"
    if f.is_file():
        return np.load(f)
    import soundfile as sf
    import torch

    from models.encoders.prosody import ProsodyEncoder, functionals

    torch.set_num_threads(1)
    paths, _, _ = ravdess_clips()
    enc = ProsodyEncoder()
    out, start = [], time.time()
    for i, p in enumerate(paths):
        audio, _ = sf.read(p, dtype="float32")
        out.append(functionals(audio, enc).numpy())
        if i % 200 == 199:
            print(f"prosody {i + 1}/{len(paths)} {time.time() - start:.0f} s", flush=True)
    arr = np.stack(out).astype(np.float32)
    np.save(f, arr)
    return arr


# --- metrics ----------------------------------------------------------------------------------


def ua(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


# --- frame head -------------------------------------------------------------------------------


def build_head(cfg: dict):
    import torch
    from torch import nn

    class AttentiveStats(nn.Module):
        def __init__(self, dim: int, hidden: int = 128) -> None:
            super().__init__()
            self.att = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def forward(self, h, mask):
            logits = self.att(h).squeeze(-1).masked_fill(~mask, -1e4)
            w = torch.softmax(logits, dim=1).unsqueeze(-1)
            mu = (w * h).sum(1)
            var = (w * h * h).sum(1) - mu * mu
            return torch.cat([mu, var.clamp_min(1e-5).sqrt()], dim=-1)

    class FrameHead(nn.Module):
        def __init__(self, mean, std, extra_dim: int = 0) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean))  # (5, 384)
            self.register_buffer("std", torch.as_tensor(std))
            self.layer_logits = nn.Parameter(torch.zeros(mean.shape[0]))
            p = cfg["proj"]
            self.drop_in = nn.Dropout(cfg["drop_in"])
            self.proj = nn.Sequential(nn.Linear(mean.shape[1], p), nn.GELU(),
                                      nn.Dropout(cfg["dropout"]))
            self.pool = AttentiveStats(p)
            self.extra = (nn.Sequential(nn.Dropout(cfg["drop_in"]), nn.Linear(extra_dim, 64),
                                        nn.GELU()) if extra_dim else None)
            width = 2 * p + (64 if extra_dim else 0)
            self.out = nn.Sequential(nn.LayerNorm(width), nn.Dropout(cfg["dropout"]),
                                     nn.Linear(width, 8))

        def forward(self, x, mask, extra=None):  # x (B, T, L, D) float
            x = (x - self.mean) / self.std
            x = (torch.softmax(self.layer_logits, 0)[:, None] * x).sum(2)
            h = self.proj(self.drop_in(x))
            z = self.pool(h, mask)
            if self.extra is not None:
                z = torch.cat([z, self.extra(extra)], -1)
            return self.out(z)

    return FrameHead


EXTRA: np.ndarray | None = None  # (N, F) utterance-level features added to the pooled vector
_EXTRA: np.ndarray | None = None  # the same, standardised on the current training part


def _extra(idx):
    import torch

    return None if _EXTRA is None else torch.from_numpy(_EXTRA[idx])


def augment(x, mask, cfg, gen):
    """Frame dropout, time masking (spans of frames dropped from the pooling mask) and
    feature masking (spans of channels set to the training mean, i.e. 0 after
    standardisation; done on the standardised-scale input through the mean buffer)."""
    import torch

    b, t = mask.shape
    mask = mask.clone()
    if cfg["frame_drop"] > 0:
        mask &= torch.rand(b, t, generator=gen) >= cfg["frame_drop"]
    for _ in range(cfg["time_masks"]):
        width = (torch.rand(b, generator=gen) * cfg["time_mask_frac"] * t).long()
        start = (torch.rand(b, generator=gen) * t).long()
        pos = torch.arange(t)[None]
        mask &= ~((pos >= start[:, None]) & (pos < (start + width)[:, None]))
    return x, mask


def feature_mask(x, model, cfg, gen):
    import torch

    if cfg["feat_masks"] <= 0:
        return x
    b, _, _, d = x.shape
    keep = torch.ones(b, 1, 1, d)
    pos = torch.arange(d)[None]
    for _ in range(cfg["feat_masks"]):
        width = (torch.rand(b, generator=gen) * cfg["feat_mask_width"]).long()
        start = (torch.rand(b, generator=gen) * d).long()
        band = (pos >= start[:, None]) & (pos < (start + width)[:, None])
        keep = keep * (~band).float()[:, None, None, :]
    # masked channels take the layer mean: zero after standardisation
    return x * keep + model.mean * (1 - keep)


X_RAW: np.ndarray | None = None


def speaker_normalise_frames(x, lengths, actors):
    """Per-actor standardisation of every layer's frames (mean/std over all that actor's
    valid frames). TRANSDUCTIVE: uses the unlabelled clips of the test actors."""
    out = np.zeros_like(x)
    valid = np.arange(x.shape[1])[None] < lengths[:, None]
    for a in np.unique(actors):
        rows = np.flatnonzero(actors == a)
        f = x[rows][valid[rows]].astype(np.float32)  # (frames, 5, 384)
        mu, sd = f.mean(0), f.std(0) + 1e-5
        for r in rows:
            out[r, : lengths[r]] = (x[r, : lengths[r]].astype(np.float32) - mu) / sd
    return out


def train_member(x, lengths, y, train_idx, val_idx, cfg, seed):
    """One head trained on train_idx; kept epoch = best validation UA (ties: lower val loss).
    Returns the kept model and its history."""
    import copy

    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # per-layer standardisation on the training clips' valid frames
    s = torch.zeros(5, 384, dtype=torch.float64)
    s2 = torch.zeros(5, 384, dtype=torch.float64)
    n = 0
    for i in train_idx:
        f = torch.from_numpy(x[i, : lengths[i]].astype(np.float32)).double()
        s += f.sum(0)
        s2 += (f * f).sum(0)
        n += f.shape[0]
    mean = (s / n).float()
    std = ((s2 / n - (s / n) ** 2).clamp_min(1e-8).sqrt()).float()
    global _EXTRA
    if EXTRA is not None:
        mu, sd = EXTRA[train_idx].mean(0), EXTRA[train_idx].std(0) + 1e-6
        _EXTRA = ((EXTRA - mu) / sd).astype(np.float32)
    # standardise the whole array once (cheaper than in every forward); buffers become 0 / 1
    x = np.empty_like(x)
    for k in range(0, len(x), 64):
        x[k: k + 64] = ((X_RAW[k: k + 64].astype(np.float32) - mean.numpy()) / std.numpy())
    x[np.arange(x.shape[1])[None] >= lengths[:, None]] = 0
    mean, std = torch.zeros_like(mean), torch.ones_like(std)
    model = build_head(cfg)(mean, std, 0 if EXTRA is None else EXTRA.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    epochs, bs = cfg["epochs"], cfg["batch"]
    steps = epochs * (-(-len(train_idx) // bs))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps)))
    yt = torch.from_numpy(y)
    best, hist = None, []
    for ep in range(epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        tot = 0.0
        for k in range(0, len(order), bs):
            idx = order[k: k + bs]
            tmax = int(lengths[idx].max())
            xb = torch.from_numpy(x[idx, :tmax].astype(np.float32))
            mb = torch.arange(tmax)[None] < torch.from_numpy(lengths[idx])[:, None]
            xb, mb2 = augment(xb, mb, cfg, gen)
            mb = torch.where(mb2.any(1, keepdim=True), mb2, mb)  # never mask a whole clip
            xb = feature_mask(xb, model, cfg, gen)
            loss = F.cross_entropy(model(xb, mb, _extra(idx)), yt[idx],
                                   label_smoothing=cfg["smooth"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        vp = predict(model, x, lengths, val_idx)
        vua = ua(y[val_idx], vp.argmax(1))
        vloss = float(-np.log(vp[np.arange(len(val_idx)), y[val_idx]] + 1e-9).mean())
        hist.append({"epoch": ep + 1, "train_loss": tot / len(order), "val_ua": vua,
                     "val_loss": vloss})
        if ep + 1 >= cfg["min_epoch"] and (best is None or (vua, -vloss) > best[0]):
            best = ((vua, -vloss), ep + 1, copy.deepcopy(model.state_dict()))
    final_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best[2])
    return model, hist, best[1], final_state, x


def predict(model, x, lengths, idx, bs: int = 128) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for k in range(0, len(idx), bs):
            i = idx[k: k + bs]
            tmax = int(lengths[i].max())
            xb = torch.from_numpy(x[i, :tmax].astype(np.float32))
            mb = torch.arange(tmax)[None] < torch.from_numpy(lengths[i])[:, None]
            out.append(torch.softmax(model(xb, mb, _extra(i)), -1).numpy())
    return np.concatenate(out)


DEFAULT_HEAD = dict(proj=128, drop_in=0.2, dropout=0.3, lr=1e-3, wd=0.05, epochs=30, batch=32,
                    smooth=0.1, frame_drop=0.1, time_masks=2, time_mask_frac=0.15,
                    feat_masks=2, feat_mask_width=40, min_epoch=5, pool=4, spknorm=0)


def run_head(cfg: dict, seeds: list[int], cv_bag: bool, folds: list[int]) -> dict:
    """6 folds. Each member: validation = one training fold group (the next fold's actors,
    or with cv_bag, member j uses the j-th training group), never the test actors.
    Ensemble = mean of members' probabilities."""
    paths, y, actors = ravdess_clips()
    global X_RAW
    x, lengths = load_frames(pool=cfg["pool"])
    if cfg.get("spknorm"):
        x = speaker_normalise_frames(x, lengths, actors)
    X_RAW = x
    predicted = np.full(len(y), -1)
    proba = np.zeros((len(y), 8), dtype=np.float32)
    fold_ua, fold_single, fold_final, details = [], [], [], []
    start = time.time()
    for k in folds:
        test = np.flatnonzero(np.isin(actors, FOLDS[k]))
        others = [j for j in range(6) if j != k]
        probs, singles, finals, members = [], [], [], []
        for m, seed in enumerate(seeds):
            vg = others[m % 5] if cv_bag else others[k % 5]
            val = np.flatnonzero(np.isin(actors, FOLDS[vg]))
            train = np.flatnonzero(~np.isin(actors, FOLDS[k] + FOLDS[vg]))
            model, hist, kept, final_state, xs = train_member(x, lengths, y, train, val, cfg,
                                                              seed)
            p = predict(model, xs, lengths, test)
            probs.append(p)
            singles.append(ua(y[test], p.argmax(1)))
            model.load_state_dict(final_state)
            finals.append(ua(y[test], predict(model, xs, lengths, test).argmax(1)))
            del xs
            import torch
            w = torch.softmax(model.layer_logits.detach(), 0).numpy().round(3).tolist()
            members.append({"seed": seed, "val_group": vg, "kept_epoch": kept,
                            "val_ua_kept": hist[kept - 1]["val_ua"], "test_ua": singles[-1],
                            "test_ua_last_epoch": finals[-1], "layer_weights_last": w,
                            "history": hist})
            print(f"  fold {k + 1} seed {seed} val-group {vg + 1}: kept epoch {kept} "
                  f"val UA {hist[kept - 1]['val_ua']:.3f} test UA {singles[-1]:.3f} "
                  f"(last epoch {finals[-1]:.3f}) {time.time() - start:.0f} s", flush=True)
        pe = np.mean(probs, 0)
        proba[test] = pe
        predicted[test] = pe.argmax(1)
        fold_ua.append(ua(y[test], predicted[test]))
        fold_single.append(float(np.mean(singles)))
        fold_final.append(float(np.mean(finals)))
        details.append({"fold": k + 1, "members": members})
        print(f"fold {k + 1}: ensemble UA {fold_ua[-1]:.3f} (members mean {fold_single[-1]:.3f})",
              flush=True)
    done = predicted >= 0
    return {"fold_ua": fold_ua, "mean_ua": float(np.mean(fold_ua)),
            "std_ua": float(np.std(fold_ua)),
            "pooled_wa": float(np.mean(predicted[done] == y[done])),
            "pooled_ua": ua(y[done], predicted[done]),
            "member_mean_fold_ua": fold_single, "member_last_epoch_fold_ua": fold_final,
            "minutes": (time.time() - start) / 60, "config": cfg, "seeds": seeds,
            "cv_bag": cv_bag, "folds_run": [k + 1 for k in folds], "details": details,
            "_proba": proba}


# --- pooled-feature probes --------------------------------------------------------------------


def speaker_normalise(x: np.ndarray, actors: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for a in np.unique(actors):
        s = actors == a
        out[s] = (x[s] - x[s].mean(0)) / (x[s].std(0) + 1e-6)
    return out


def run_probe(x: np.ndarray, y: np.ndarray, actors: np.ndarray, cs=(1e-3, 3e-3, 1e-2)) -> dict:
    """Standardised logistic regression, C chosen by UA over 4 inner GroupKFold folds of
    the training actors (as bench/layer_probe.py)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.full_like(y, -1)
    proba = np.zeros((len(y), 8), dtype=np.float32)
    fold_ua, chosen, start = [], [], time.time()
    for held in FOLDS:
        test = np.isin(actors, held)
        sc = StandardScaler().fit(x[~test])
        inner = list(GroupKFold(n_splits=4).split(x[~test], y[~test], actors[~test]))
        lr = LogisticRegressionCV(Cs=list(cs), cv=inner, scoring="balanced_accuracy",
                                  max_iter=1000, refit=True, l1_ratios=(0.0,),
                                  use_legacy_attributes=True)
        lr.fit(sc.transform(x[~test]), y[~test])
        proba[test] = lr.predict_proba(sc.transform(x[test]))
        predicted[test] = proba[test].argmax(1)
        fold_ua.append(ua(y[test], predicted[test]))
        chosen.append(float(np.ravel(lr.C_)[0]))
        print(f"  fold UA {fold_ua[-1]:.3f} C {chosen[-1]} {time.time() - start:.0f} s", flush=True)
    return {"fold_ua": fold_ua, "mean_ua": float(np.mean(fold_ua)),
            "std_ua": float(np.std(fold_ua)),
            "pooled_wa": float(np.mean(predicted == y)), "pooled_ua": ua(y, predicted),
            "chosen_c": chosen, "minutes": (time.time() - start) / 60, "_proba": proba}


def save(name: str, result: dict, out: Path) -> None:
    """Merge ``result`` into the JSON under ``name``; test-fold probabilities go to
    CACHE/proba-<name>.npy (for the ensemble experiment)."""
    proba = result.pop("_proba", None)
    if proba is not None:
        np.save(CACHE / f"proba-{name}.npy", proba)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[name] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(f"{name}: UA {result['mean_ua']:.3f} ± {result['std_ua']:.3f} folds "
          f"{[round(u, 3) for u in result['fold_ua']]} WA {result['pooled_wa']:.3f} "
          f"{result['minutes']:.1f} min -> {out}", flush=True)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=["extract", "prosody-extract", "head", "probe",
                                                      "ensemble", "table"])
    parser.add_argument("--members", help="ensemble: comma-separated result names (mean of "
                        "their saved test probabilities)")
    parser.add_argument("--name", help="result key in the JSON (default: derived)")
    parser.add_argument("--speed", type=float, default=1.0, help="extract: speed factor")
    parser.add_argument("--seeds", type=int, default=1, help="head: ensemble members")
    parser.add_argument("--cv-bag", action="store_true",
                        help="head: member j validates on the j-th training group")
    parser.add_argument("--folds", default="1,2,3,4,5,6")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"head hyper-parameter, defaults {DEFAULT_HEAD}")
    parser.add_argument("--features", default="concat",
                        help="probe: concat | concat+prosody | prosody; suffix +spknorm")
    parser.add_argument("--prosody", action="store_true", help="head: add prosody functionals")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (2 threads ran 7x slower than 1 on the shared box)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/recipe_explore.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.experiment == "extract":
        extract_frames(args.speed)
        return
    if args.experiment == "prosody-extract":
        print(prosody_features().shape)
        return
    folds = [int(f) - 1 for f in args.folds.split(",")]
    if args.experiment == "head":
        cfg = dict(DEFAULT_HEAD)
        for kv in args.set:
            k, v = kv.split("=")
            cfg[k] = type(DEFAULT_HEAD[k])(float(v)) if k in DEFAULT_HEAD else float(v)
        name = args.name or f"head-s{args.seeds}{'-cvbag' if args.cv_bag else ''}"
        if args.prosody:
            global EXTRA
            EXTRA = prosody_features()
        result = run_head(cfg, list(range(args.seeds)), args.cv_bag, folds)
        result["command"] = " ".join(sys.argv)
        save(name, result, args.out)
        return
    if args.experiment == "table":
        data = json.loads(args.out.read_text())
        print("| experiment | " + " | ".join(f"fold {i + 1}" for i in range(6))
              + " | mean UA ± std | pooled WA | minutes |")
        print("|---" * 10 + "|")
        for name, r in data.items():
            print(f"| {name} | " + " | ".join(f"{u:.3f}" for u in r["fold_ua"])
                  + f" | **{r['mean_ua']:.3f}** ± {r['std_ua']:.3f} | {r['pooled_wa']:.3f} | "
                  f"{r['minutes']:.1f} |")
        return
    if args.experiment == "ensemble":
        _, y, actors = ravdess_clips()
        probs = [np.load(CACHE / f"proba-{m}.npy") for m in args.members.split(",")]
        pe = np.mean(probs, 0)
        pred = pe.argmax(1)
        fold_ua = [ua(y[np.isin(actors, f)], pred[np.isin(actors, f)]) for f in FOLDS]
        result = {"fold_ua": fold_ua, "mean_ua": float(np.mean(fold_ua)),
                  "std_ua": float(np.std(fold_ua)), "pooled_wa": float(np.mean(pred == y)),
                  "pooled_ua": ua(y, pred), "members": args.members.split(","), "minutes": 0.0,
                  "command": " ".join(sys.argv)}
        save(args.name or f"ensemble-{args.members}", result, args.out)
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    d = np.load("/tmp/layer-probe/tiny.en-window10.npz")
    y, actors = d["labels"], d["actors"]
    paths, y2, a2 = ravdess_clips()
    assert np.array_equal(y, y2) and np.array_equal(actors, a2)
    parts = []
    feats = args.features.split("+")
    if "concat" in feats:
        parts.append(d["layers"].reshape(len(y), -1))
    for f in feats:
        if f.startswith("layer"):
            parts.append(d["layers"][:, int(f[5:])])
    if "prosody" in feats:
        parts.append(prosody_features())
    xx = np.concatenate(parts, 1).astype(np.float32)
    if "spknorm" in feats:
        xx = speaker_normalise(xx, actors)
    result = run_probe(xx, y, actors)
    result["command"] = " ".join(sys.argv)
    save(args.name or f"probe-{args.features}", result, args.out)


if __name__ == "__main__":
    main()
