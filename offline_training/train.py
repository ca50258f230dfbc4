"""Training one fusion head on cached features: Adam(W), LR schedule, early stopping,
class weighting, seeds. Defaults per paper in ``PAPER_DEFAULTS``. Closed-form heads
(``linear_probe``) are fitted by scikit-learn instead, see ``fit_linear_probe``."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from offline_training.augment import AugmentConfig, augment_batch
from offline_training.errors import TrainingError
from offline_training.metrics import Scores, score

SELECT = ("wa", "ua", "wf1", "uwf1", "loss", "last")
# linear_probe: the inverse L2 strengths tried by the inner cross-validation (half decades
# around what ~1k clips of 768-1536 standardised dimensions choose; larger C fit slowly and
# were never chosen on RAVDESS).
PROBE_CS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# Inner-CV metrics of the chosen C, as Scores fields (sklearn scorer names).
PROBE_SCORING = {"ua": "balanced_accuracy", "wa": "accuracy", "wf1": "f1_weighted",
                 "uwf1": "f1_macro", "loss": "neg_log_loss"}
ABSENT_CLASS_LOGIT = -50.0  # probe bias of a class the training fold lacks: never predicted


@dataclass(frozen=True)
class TrainConfig:
    """How to train a head. ``monitor`` (validation loss) drives the LR plateau schedule and
    early stopping; ``select`` picks the epoch whose weights are kept."""

    head: str = "self_mha"
    head_settings: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 50
    plateau_patience: int = 5  # epochs without val-loss improvement before LR *= plateau_factor
    plateau_factor: float = 0.1
    stop_patience: int = 10  # epochs without val-loss improvement before stopping
    # Validation metric that picks the kept weights. UA, not WA: a few hundred validation
    # clips with unequal classes make WA reward the majority class.
    select: str = "ua"
    class_weighting: bool = True  # inverse-frequency class weights in the loss
    context_size: int = 4  # past utterances for context-aware heads
    seed: int = 0
    device: str = "cpu"
    accelerate: bool = False  # data-parallel through HF accelerate (run under accelerate launch)
    probe_cs: tuple[float, ...] = PROBE_CS  # linear_probe: C grid of the inner CV
    probe_inner_folds: int = 5  # linear_probe: speaker-grouped inner folds (fewer if fewer)
    text_affect: str = ""  # linear_probe_affect: text affect model directory ("" = packaged)
    # Training-batch augmentation (offline_training.augment); closed-form heads ignore it.
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got '{self.select}'")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be adam or adamw, got '{self.optimizer}'")
        if not self.probe_cs or min(self.probe_cs) <= 0:
            raise ValueError(f"probe_cs must be positive values, got {self.probe_cs}")
        if self.probe_inner_folds < 2:
            raise ValueError(f"probe_inner_folds must be >= 2, got {self.probe_inner_folds}")


# Training settings the papers report (overridable from the CLI).
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    # self/cross-attention paper: Adam 1e-4, batch 32, <= 50 epochs, LR x0.1 after 5 epochs
    # without val-loss improvement, stop after 10, keep the best validation WA (here UA, the
    # default; --select wa for the paper's choice).
    "self_mha": {}, "cross_mha": {}, "text_only": {}, "audio_only": {},
    # shared-weight transformer: Adam 1e-3, L2 2e-4.
    "shared_qk_mt": {"lr": 1e-3, "weight_decay": 2e-4},
    # MMER: constant LR 1e-5, batch 2 x 4 accumulation (8), 100 epochs.
    "mmer": {"lr": 1e-5, "batch_size": 8, "max_epochs": 100, "plateau_patience": 0,
             "stop_patience": 0},
    # CM-RoBERTa: Adam 1e-4, batch 32, 200 epochs, stop after 15, L2 3e-4, weighted F1.
    "cm_roberta": {"weight_decay": 3e-4, "max_epochs": 200, "stop_patience": 15,
                   "plateau_patience": 0, "select": "wf1"},
    # context MMT: AdamW 1e-3, wd 1e-3, stop after 10 epochs on dev loss, last model kept.
    "context_mmt": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-3,
                    "plateau_patience": 0, "select": "last"},
}


# Heads that are variants or baselines of a paper's model train with that paper's settings.
PAPER_OF = {"cmt_a2t": "context_mmt", "cmt_t2a": "context_mmt", "early_fusion": "context_mmt",
            "late_fusion": "context_mmt"}


def paper_config(head: str, **overrides: Any) -> TrainConfig:
    """TrainConfig with the paper's settings for ``head`` (variants share their base's)."""
    paper = PAPER_OF.get(head) or next(
        (k for k in sorted(PAPER_DEFAULTS, key=len, reverse=True) if head.startswith(k)), "")
    return TrainConfig(head=head, **{**PAPER_DEFAULTS.get(paper, {}), **overrides})


def data_settings(head: str, example: Any, context_size: int) -> dict[str, Any]:
    """Head config fields fixed by the data (layer counts, functionals width, context size),
    for the heads whose config has them."""
    from models.heads import head_spec

    fields = {f.name for f in dataclasses.fields(head_spec(head).head_cls.config_cls)}
    known: dict[str, Any] = {
        "text_layers": 1 if example.text_layers is None else int(example.text_layers.shape[0]),
        "audio_layers": 1 if example.audio_layers is None else int(example.audio_layers.shape[0]),
        "functionals_dim": 0 if example.functionals is None else int(example.functionals.shape[0]),
        "context_size": context_size,
    }
    return {k: v for k, v in known.items() if k in fields}


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    valid_loss: float
    valid: Scores
    lr: float


@dataclass(frozen=True)
class Predictions:
    ids: tuple[str, ...]
    y_true: tuple[int, ...]
    y_pred: tuple[int, ...]
    probabilities: np.ndarray  # (N, C)


@dataclass(frozen=True)
class TrainResult:
    head: Any  # FusionHead with the selected weights, eval mode
    history: tuple[EpochLog, ...]
    best_epoch: int
    valid: Scores
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the probe's chosen C


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: Sequence[int], num_classes: int) -> Tensor:
    """Inverse class frequency, normalised to mean 1 (absent classes get weight 0)."""
    counts = torch.bincount(torch.tensor(list(labels)), minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)),
                          torch.zeros_like(counts))
    return weights


def batches(items: Sequence[Any], size: int, generator: torch.Generator | None) -> list[list[Any]]:
    order = (torch.randperm(len(items), generator=generator).tolist() if generator is not None
             else list(range(len(items))))
    return [[items[i] for i in order[s:s + size]] for s in range(0, len(order), size)]


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def predict(head: Any, items: Sequence[Any], ids: Sequence[str], batch_size: int = 64,
            device: str = "cpu", weights: Tensor | None = None) -> tuple[Predictions, float]:
    """Predictions and mean loss of ``head`` on labelled ``items``."""
    from models.heads import collate

    head.eval()
    probs, losses = [], []
    for chunk in batches(items, batch_size, None):
        batch = collate(chunk).to(device)
        output = head(batch)
        losses.append(float(head.loss(batch, output, weights)) * len(chunk))
        probs.append(torch.softmax(output.logits.float(), dim=-1).cpu())
    probabilities = torch.cat(probs).numpy()
    y_true = tuple(int(it.label) for it in items)
    return (Predictions(ids=tuple(ids), y_true=y_true,
                        y_pred=tuple(int(p) for p in probabilities.argmax(axis=1)),
                        probabilities=probabilities),
            sum(losses) / len(items))


class Stepper:
    """One optimisation step per batch, on one device (the default)."""

    def __init__(self, head: Any, optimizer: torch.optim.Optimizer, device: str,
                 weights: Tensor | None, augment: AugmentConfig | None = None) -> None:
        self.head = head.to(device)
        self.optimizer = optimizer
        self.device = device
        self.weights = None if weights is None else weights.to(device)
        self.augment = augment or AugmentConfig()

    def epoch(self, items: Sequence[Any], batch_size: int, generator: torch.Generator) -> float:
        """Train one epoch; return the mean training loss."""
        from models.heads import collate

        self.head.train()
        total = 0.0
        for chunk in batches(items, batch_size, generator):
            batch = augment_batch(collate(chunk), self.augment, generator).to(self.device)
            loss = self.head.loss(batch, self.head(batch), self.weights)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(chunk)
        return total / len(items)


class AccelerateStepper(Stepper):
    """Data-parallel training through Hugging Face accelerate (``accelerate launch``): the
    model is wrapped (DDP), each process trains on its shard of every epoch's batches."""

    def __init__(self, head: Any, optimizer: torch.optim.Optimizer,
                 weights: Tensor | None, augment: AugmentConfig | None = None) -> None:
        try:
            from accelerate import Accelerator
        except ImportError as exc:
            raise TrainingError("--accelerate needs the 'accelerate' package: "
                                "pip install 'emotion-stream[train]'") from exc
        self.accelerator = Accelerator()
        super().__init__(head, optimizer, str(self.accelerator.device), weights, augment)
        self.wrapped, self.optimizer = self.accelerator.prepare(self.head, optimizer)
        self.loader: Any = None

    def epoch(self, items: Sequence[Any], batch_size: int, generator: torch.Generator) -> float:
        from torch.utils.data import DataLoader

        from models.heads import collate

        if self.loader is None:
            dataset: Any = list(items)  # a list is a map-style dataset
            self.loader = self.accelerator.prepare(DataLoader(
                dataset, batch_size=batch_size, shuffle=True, generator=generator,
                collate_fn=collate))
        self.wrapped.train()
        total, count = 0.0, 0
        for batch in self.loader:
            batch = augment_batch(batch, self.augment, generator)
            loss = self.head.loss(batch, self.wrapped(batch), self.weights)
            self.optimizer.zero_grad()
            self.accelerator.backward(loss)
            self.optimizer.step()
            total += loss.item() * batch.batch_size
            count += batch.batch_size
        return total / max(count, 1)


def new_head(config: TrainConfig, example: Any, audio_dim: int, text_dim: int,
             num_classes: int) -> Any:
    from models.heads import build_head

    settings = {**data_settings(config.head, example, config.context_size),
                **config.head_settings, "audio_dim": audio_dim, "text_dim": text_dim,
                "num_classes": num_classes}
    return build_head(config.head, settings)


def selection_value(config: TrainConfig, epoch: int, valid_loss: float, valid: Scores) -> float:
    if config.select == "loss":
        return -valid_loss
    if config.select == "last":
        return float(epoch)
    return float(getattr(valid, config.select))


def probe_matrix(head: Any, items: Sequence[Any], batch_size: int = 256) -> np.ndarray:
    """(N, F) float64: the probe's pooled features of ``items``, by the head's own code (the
    path it serves through), before standardisation."""
    from models.heads import collate

    with torch.no_grad():
        rows = [head.probe_features(collate(chunk)) for chunk in batches(items, batch_size, None)]
    return torch.cat(rows).double().numpy()


def weigh_columns(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return x * weight


# The smallest standard deviation a text column is divided by. On a corpus whose words never
# change (RAVDESS: two neutral sentences) the text features hardly vary in training, and
# dividing by that would turn any other words at test time (noise, another language's
# transcript) into huge standardised values. Affect scores are probabilities; pooled MiniLM
# token states have a spread of about 0.1 per dimension over varied text.
AFFECT_STD_FLOOR = 0.05
TEXT_STATE_STD_FLOOR = 0.05


def floored_scaler(floor: np.ndarray) -> Any:
    """A StandardScaler whose per-column scale is at least ``floor``."""
    from sklearn.preprocessing import StandardScaler

    class FlooredScaler(StandardScaler):  # type: ignore[misc]
        def __init__(self, floor: np.ndarray | None = None, *, copy: bool = True,
                     with_mean: bool = True, with_std: bool = True) -> None:
            super().__init__(copy=copy, with_mean=with_mean, with_std=with_std)
            self.floor = floor

        def fit(self, x: np.ndarray, y: Any = None, sample_weight: Any = None) -> Any:
            super().fit(x, y, sample_weight)
            if self.floor is not None:
                scale: np.ndarray = getattr(self, "scale_")  # noqa: B009 (set by fit)
                self.scale_ = np.maximum(scale, self.floor)
            return self

    return FlooredScaler(floor)


def probe_pipeline(head: Any, width: int, class_weighting: bool = True, c: float = 1.0) -> Any:
    """The probe's scikit-learn model for ``width`` columns laid out as ``head`` pools them:
    floored standardisation, column weights, logistic regression with inverse L2 ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # Column weights after standardisation: a few affect scores next to thousands of audio
    # dimensions would otherwise be regularised into silence (L2 is shared); a weight w on
    # a column is the same as dividing its standard deviation by w, folded in below.
    column_weight, floor = np.ones(width), np.zeros(width)
    if getattr(head, "use_affect", False):
        column_weight[-head.config.affect_labels:] = head.config.affect_scale
        floor[-head.config.affect_labels:] = AFFECT_STD_FLOOR
    if getattr(head, "use_text", False):  # mean + std pooled text states, before affect
        end = width - (head.config.affect_labels if head.use_affect else 0)
        floor[end - 2 * head.config.text_dim:end] = TEXT_STATE_STD_FLOOR
    return make_pipeline(floored_scaler(floor), FunctionTransformer(weigh_columns, kw_args={
        "weight": column_weight}), LogisticRegression(
        C=c, max_iter=1000, class_weight="balanced" if class_weighting else None))


def copy_probe_solution(model: Any, head: Any, num_classes: int) -> None:
    """Copy a fitted ``probe_pipeline`` into ``head`` (standardisation + linear layer)."""
    scaler, logreg = model.named_steps["flooredscaler"], model.named_steps["logisticregression"]
    column_weight = model.named_steps["functiontransformer"].kw_args["weight"]
    present = logreg.classes_  # the classes the training part has, sorted
    coef, intercept = logreg.coef_, logreg.intercept_
    if len(present) == 2:  # sklearn keeps one row (class 1 vs 0); softmax needs one per class
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, ABSENT_CLASS_LOGIT)
    weight[present], bias[present] = coef, intercept
    head.set_solution(torch.as_tensor(scaler.mean_, dtype=torch.float32),
                      torch.as_tensor(scaler.scale_ / column_weight, dtype=torch.float32),
                      torch.as_tensor(weight, dtype=torch.float32),
                      torch.as_tensor(bias, dtype=torch.float32))
    head.eval()


def fit_linear_probe(config: TrainConfig, head: Any, train_items: Sequence[Any],
                     valid_items: Sequence[Any], train_groups: Sequence[str] | None,
                     valid_groups: Sequence[str] | None, num_classes: int) -> TrainResult:
    """Standardise + logistic regression on train + validation utterances (all of them are
    training speakers; the probe needs no early stopping), C chosen by UA in a
    speaker-grouped inner cross-validation (GroupKFold), then copied into ``head``.

    ``valid`` and ``valid_loss`` are that inner CV's fold-mean scores at the chosen C."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GridSearchCV, GroupKFold

    if train_groups is None or valid_groups is None:
        raise TrainingError(f"head '{config.head}' chooses its regularisation by speaker-grouped "
                            "cross-validation and needs the speaker of every training utterance")
    items = [*train_items, *valid_items]
    groups = np.array([*train_groups, *valid_groups])
    if len(groups) != len(items):
        raise TrainingError(f"{len(items)} utterances but {len(groups)} speaker groups")
    speakers = len(set(groups.tolist()))
    if speakers < 2:
        raise TrainingError(f"head '{config.head}' needs at least 2 training speakers for its "
                            f"inner cross-validation; found {speakers}")
    if getattr(head, "use_affect", False):  # GoEmotions label scores of the words
        from models.text_affect import PACKAGED_TEXT_AFFECT, load_text_affect

        head.set_text_affect(load_text_affect(config.text_affect or PACKAGED_TEXT_AFFECT))
    x = probe_matrix(head, items)
    y = np.array([int(it.label) for it in items])
    cv = GroupKFold(n_splits=min(config.probe_inner_folds, speakers))
    model = probe_pipeline(head, x.shape[1], config.class_weighting)
    # error_score=nan: an inner fold whose training part lacks a class its test part has
    # cannot give a log loss; that fold's loss is left out (nanmean), its other scores stay.
    search = GridSearchCV(model, {"logisticregression__C": list(config.probe_cs)},
                          scoring=PROBE_SCORING, refit="ua", cv=cv, error_score=np.nan)
    search.fit(x, y, groups=groups)
    best = search.best_estimator_
    copy_probe_solution(best, head, num_classes)

    results, index = search.cv_results_, search.best_index_
    splits = cv.get_n_splits()

    def inner(metric: str) -> float:
        return float(np.nanmean([results[f"split{k}_test_{metric}"][index]
                                 for k in range(splits)]))

    valid = Scores(wa=inner("wa"), ua=inner("ua"), wf1=inner("wf1"), uwf1=inner("uwf1"),
                   n=len(items))
    valid_loss = -inner("loss")
    present = best.named_steps["logisticregression"].classes_
    train_loss = float(log_loss(y, best.predict_proba(x), labels=present))
    c = float(search.best_params_["logisticregression__C"])
    details = {"C": c, "inner_folds": splits, "fitted_on": len(items),
               "inner_cv_ua": {str(float(v)): float(m) for v, m in zip(
                   results["param_logisticregression__C"], results["mean_test_ua"],
                   strict=True)}}
    return TrainResult(head=head, history=(EpochLog(1, train_loss, valid_loss, valid, 0.0),),
                       best_epoch=1, valid=valid, details=details)


def train_head(config: TrainConfig, train_items: Sequence[Any], valid_items: Sequence[Any],
               audio_dim: int, text_dim: int, num_classes: int,
               progress: str = "", train_groups: Sequence[str] | None = None,
               valid_groups: Sequence[str] | None = None,
               on_epoch: Callable[[EpochLog], None] | None = None) -> TrainResult:
    """Train a new head; keep the weights of the epoch chosen by ``config.select``.

    ``train_groups``/``valid_groups``: the speaker of each utterance (closed-form heads pick
    their regularisation by speaker-grouped cross-validation)."""
    if not train_items or not valid_items:
        raise TrainingError(f"training needs training and validation utterances; got "
                            f"{len(train_items)} and {len(valid_items)}")
    seed_everything(config.seed)
    head = new_head(config, train_items[0], audio_dim, text_dim, num_classes)
    if getattr(head, "closed_form", False):
        return fit_linear_probe(config, head, train_items, valid_items, train_groups,
                                valid_groups, num_classes)
    optimizer = make_optimizer(config, head.parameters())
    weights = (class_weights([it.label for it in train_items], num_classes)
               if config.class_weighting else None)
    stepper = (AccelerateStepper(head, optimizer, weights, config.augment) if config.accelerate
               else Stepper(head, optimizer, config.device, weights, config.augment))
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience)
        if config.plateau_patience > 0 else None)
    generator = torch.Generator().manual_seed(config.seed)
    valid_ids = [str(i) for i in range(len(valid_items))]
    history: list[EpochLog] = []
    best_state, best_value, best_epoch = copy.deepcopy(head.state_dict()), -float("inf"), 0
    best_loss, since_best_loss = float("inf"), 0
    for epoch in range(1, config.max_epochs + 1):
        train_loss = stepper.epoch(train_items, config.batch_size, generator)
        preds, valid_loss = predict(head, valid_items, valid_ids, device=stepper.device,
                                    weights=stepper.weights)
        valid = score(preds.y_true, preds.y_pred, num_classes)
        history.append(EpochLog(epoch, train_loss, valid_loss, valid,
                                optimizer.param_groups[0]["lr"]))
        value = selection_value(config, epoch, valid_loss, valid)
        if value > best_value:
            best_value, best_epoch = value, epoch
            best_state = copy.deepcopy(head.state_dict())
        if scheduler is not None:
            scheduler.step(valid_loss)
        if valid_loss < best_loss - 1e-6:
            best_loss, since_best_loss = valid_loss, 0
        else:
            since_best_loss += 1
        if on_epoch is not None:
            on_epoch(history[-1])
        if progress:
            print(f"{progress} epoch {epoch:3d} train {train_loss:.4f} valid {valid_loss:.4f} "
                  f"WA {valid.wa:.3f} UA {valid.ua:.3f}", flush=True)
        if config.stop_patience > 0 and since_best_loss >= config.stop_patience:
            break
    if best_epoch == 0:
        raise TrainingError("no epoch was trained; max_epochs must be >= 1")
    head.load_state_dict(best_state)
    head.eval()
    return TrainResult(head=head, history=tuple(history), best_epoch=best_epoch,
                       valid=history[best_epoch - 1].valid)


def with_overrides(config: TrainConfig, **overrides: Any) -> TrainConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
