"""What the head morphometry and the learned head encoder know about real heads: MHSMA.

MHSMA (../shared/data/mhsma, PROVENANCE.md there): 64 x 64 px grey crops of unstained human
sperm heads with expert labels (0 normal, 1 abnormal) for head, vacuole and acrosome; its own
train split (1,000 images) for everything that is fitted or chosen, its valid split (240) for
the figures only. The test split is not in shared/ and is not used.

Cross-fitting on train. Train is cut into 5 folds (``head_encoder.fold_indices``, stratified
on the three labels, seed 0). Model k learns from the other four folds (early stopping on
fold k) and predicts fold k: those out-of-fold train predictions choose every decision
threshold; valid sees the mean of the models' probabilities. Rows, per label:

- majority: the train share of abnormal heads as the score (every operating point says
  "normal");
- morphometry + LR: modeling.ml.morphometry's features of each head (frame_morphometry at
  MHSMA's pixel size, benchmarks.mhsma_labels.pixel_size_um; plus a found-a-head flag), the
  linear probe (``head_encoder.fit_probe``: standardised, logistic regression C = 1, balanced
  class weights), cross-fitted over all 5 folds;
- encoder from scratch: the head encoder and a linear layer per label trained jointly by
  ``pretrain_encoder`` (augmentation, class-balanced loss, early stopping on its fold), their
  own predictions: one model (fold 0) without and with test-time augmentation (TTA: the mean
  probability over the 8 rotations and mirrors), then the ensemble of the fold 0..2 models;
- probe, pretrained encoder: each fold model's encoder features (TTA: the mean over the 8
  views), the linear probe fitted on that model's own training folds, predicting its held-out
  fold and valid (what ``probe_head`` does with the file ``pretrain_head`` writes);
- probe, encoder + morphometry: the same on [encoder features, morphometry features];
- probe, synthetic-pretrained encoder (``--synthetic N``): an encoder pretrained on N heads
  the simulator draws, probed on MHSMA the same way.

Three operating points per row: the threshold that maximises plain accuracy on the
out-of-fold train predictions (the figure to compare with the paper's, whose classes are
imbalanced: about 73 % normal heads, 87 % no vacuole, 71 % normal acrosome on valid), with
the balanced accuracy at that threshold beside it; the threshold that maximises balanced
accuracy there; and the model's own (p > 0.5, near the balanced optimum since every model
weighs the classes equally). AUC does not depend on the threshold.

Choices, all made before any valid figure was seen, none tuned: the encoder at its defaults
(widths 16, 32, 48; AdamW lr 2e-3, weight decay 1e-4, batch 64, augmentation as in
``augment_heads``), at most 45 epochs with patience 8 (the 2026-12-04 run's best epoch was 26 of
36), model k seeded k; 5 folds (each model sees 80 % of
train, as the 20 % val split before); TTA over the 8 dihedral views (exact symmetries of a
head crop, and the training augmentation already applies them); the three labels trained
jointly as before (tail not added); ensemble of all 5 fold models (the first figures below
had only folds 0..2: the shared CPU allowed 3 in the time; folds 3 and 4 were trained later
the same day, unchanged, to complete the design); probe C = 1 as before; thresholds by
``head_encoder.choose_threshold`` (the middle of equally good ones). Morphometry and encoder
models are cached under var/bench/mhsma, so a rerun of the figures takes minutes.

Measured 2026-12-06 on this project's machine (2 CPU cores shared by 6 helpers' jobs, load
11-15), one torch thread per process: the three fold models trained in parallel
(`--train-fold 0`, `1`, `2`: 37, 47 and 41 min; best epochs 15 of 23, 22 of 30, 16 of 24),
then `.venv/bin/python benchmarks/morphology.py` (5.5 min, load 11; TTA predictions and
features 5.4 min of it). The morphometry found a head in 100 % of the 1,240 images (0.170
µm/px). MHSMA valid, at the accuracy operating point: accuracy / balanced accuracy / AUC

                                        head                  vacuole               acrosome
    majority (train's)           0.733 / 0.500 / 0.500  0.871 / 0.500 / 0.500  0.725 / 0.500 / 0.500
    morphometry + LR             0.746 / 0.533 / 0.685  0.879 / 0.628 / 0.832  0.725 / 0.505 / 0.679
    encoder, one, no TTA         0.733 / 0.500 / 0.721  0.875 / 0.791 / 0.907  0.733 / 0.525 / 0.679
    encoder, one, TTA            0.729 / 0.497 / 0.724  0.904 / 0.725 / 0.896  0.725 / 0.524 / 0.673
    encoder, 3, TTA              0.746 / 0.538 / 0.726  0.892 / 0.608 / 0.901  0.721 / 0.535 / 0.679
    probe, pretrained encoder, 3 0.767 / 0.567 / 0.720  0.896 / 0.652 / 0.903  0.750 / 0.616 / 0.694
    probe, encoder + morphometry 0.733 / 0.500 / 0.724  0.871 / 0.527 / 0.914  0.721 / 0.549 / 0.689
    paper (test accuracy)                0.770                  0.913                  0.767

At the balanced-accuracy operating point (accuracy / balanced accuracy): morphometry 0.637 /
0.658, 0.808 / 0.766, 0.671 / 0.637; encoder, 3, TTA 0.717 / 0.668, 0.783 / 0.834, 0.600 /
0.639; probe, pretrained encoder 0.667 / 0.673, 0.787 / 0.823, 0.613 / 0.639. At the models'
own point (p > 0.5): encoder, 3, TTA 0.721 / 0.665, 0.854 / 0.848, 0.667 / 0.634.

What it says. The targets are not met: the best row, the probe on the cross-fitted encoders'
TTA features, comes within 0.3, 1.7 and 1.7 points of the paper (head 76.7 vs 77.0, vacuole
89.6 vs 91.3, acrosome 75.0 vs 76.7; one seed, 240 valid heads: one head is 0.4 points, so
these gaps are 1, 4 and 4 heads). The accuracy operating point moves every learned row from
below the majority class (the 2026-12-04 figures, and the own-point rows here) to at or above
it, at the price of balanced accuracy (0.50-0.65 where the balanced point gives 0.64-0.83).
The learned encoder still knows more than the rewritten morphometry about vacuoles (AUC
0.90-0.91 vs 0.83) and the head (0.72 vs 0.69), little more about the acrosome (0.68-0.69 vs
0.68). TTA and the 3-model ensemble change the figures by about the spread between one model
and another here (AUC within 0.01; accuracies within a few heads), and adding the
morphometry to the probe's features does not help at the accuracy point (its thresholds,
0.92 and 0.96, say the out-of-fold train scores were separated differently from valid's).

All 5 fold models (the design; folds 3 and 4 trained afterwards with `--train-fold 3` and
`4` in parallel, 4.5-5 min each, best epochs 20 and 26, while the test suite ran beside them at
a lower priority; then `.venv/bin/python benchmarks/morphology.py`, 3.2 min, load about 2),
MHSMA valid at the accuracy operating point:

                                        head                  vacuole               acrosome
    encoder, 5, TTA              0.738 / 0.518 / 0.723  0.879 / 0.546 / 0.898  0.729 / 0.536 / 0.680
    probe, pretrained encoder, 5 0.733 / 0.500 / 0.725  0.892 / 0.636 / 0.911  0.725 / 0.500 / 0.698
    probe, encoder + morphometry 0.733 / 0.500 / 0.723  0.892 / 0.649 / 0.915  0.746 / 0.561 / 0.694

(the single-model and morphometry rows do not change.) With the whole ensemble the best row
falls back to the majority class for the head (0.733) and the acrosome (0.725), and the
vacuole stays at 0.892: the 3-model figures above, 1-4 heads short of the paper, were the
favourable end of a spread of about 3 points (7 heads) that the choice of fold models alone
moves. AUC, which does not depend on a threshold, is steady (0.72, 0.90-0.91, 0.68-0.70).
So the thresholds chosen on out-of-fold train scores do not carry to valid reliably at
these margins, and the encoder's discrimination (AUC 0.72 for the head) is what limits the
accuracy: the targets need a better model, not a better operating point. Not tried for the
time: more seeds, a stronger training recipe (longer cosine schedule, stronger augmentation,
mixup), a wider encoder, the tail label.

Run: .venv/bin/python benchmarks/morphology.py [--seed N] [--synthetic N]
     (train the fold models in parallel first: --train-fold K for K in 0 .. 4)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.mhsma_labels import convert, pixel_size_um  # noqa: E402
from modeling.ml.head_encoder import (  # noqa: E402
    OPERATING_POINTS,
    HeadClassifier,
    HeadEncoder,
    HeadEncoderConfig,
    HeadSet,
    PretrainConfig,
    choose_threshold,
    decision_metrics,
    dihedral_views,
    encode_heads,
    file_sha256,
    fit_probe,
    fold_indices,
    head_morphometry,
    pretrain_encoder,
    probe_probabilities,
    read_head_dir,
    save_encoder,
)

MHSMA = ROOT.parent / "shared" / "data" / "mhsma"
LABELS = ("head", "vacuole", "acrosome")
PAPER_TEST_ACCURACY = {"head": 0.770, "vacuole": 0.9133, "acrosome": 0.7667}
WORK = ROOT / "var" / "bench" / "mhsma"


def mhsma_dir(split: str) -> Path:
    """The labelled head directory of MHSMA's ``split`` (converted once into var/bench by
    benchmarks/mhsma_labels.py, reused after)."""
    out = WORK / f"converted-{split}"
    if (out / "labels.csv").is_file():
        return out
    return Path(convert(MHSMA, split, out))


def pretrained_mhsma_encoder(out: Path, *, seed: int = 0, size: int | None = None) -> Path:
    """An encoder file pretrained on MHSMA's train split (for benchmarks/training.py)."""
    heads = read_head_dir(mhsma_dir("train"), labels=list(LABELS), size=size)
    result = pretrain_encoder(heads, PretrainConfig(seed=seed), progress=True)
    save_encoder(out, result.encoder, result.record)
    return out


FOLDS = 5
ENSEMBLE = 5  # the encoders of all 5 folds (folds 3 and 4 trained after the first figures)
EPOCHS = 45
PATIENCE = 8


def fold_cache(seed: int, fold: int) -> Path:
    return WORK / f"folds{FOLDS}-seed{seed}" / f"fold{fold}.pt"


def train_fold(train: HeadSet, *, seed: int, fold: int, progress: bool = True) -> Path:
    """Train (or find cached) the encoder of cross-fitting fold ``fold``: its val (early
    stopping, and the out-of-fold predictions) is that fold of train, it learns from the
    others. Cached as the classifier's weights under var/bench/mhsma."""
    out = fold_cache(seed, fold)
    if out.is_file():
        return out
    val = fold_indices(train.labels, folds=FOLDS, seed=seed)[fold]
    config = PretrainConfig(seed=seed * FOLDS + fold, epochs=EPOCHS, patience=PATIENCE)
    t0 = time.perf_counter()
    result = pretrain_encoder(train, config, progress=progress, val_index=val)
    assert result.classifier is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(out.with_suffix(".encoder.pt"), result.encoder, result.record)
    tmp = out.with_suffix(".tmp")
    torch.save(
        {
            "classifier": result.classifier.state_dict(),
            "widths": list(config.widths),
            "n_classes": {name: len(c) for name, c in train.classes.items()},
            "val_index": val,
            "record": result.record,
            "minutes": (time.perf_counter() - t0) / 60,
        },
        tmp,
    )
    tmp.replace(out)
    return out


def load_fold(seed: int, fold: int) -> tuple[HeadClassifier, np.ndarray, dict[str, Any]]:
    """The cached classifier of a fold (eval mode), its val indices and its record."""
    saved = torch.load(fold_cache(seed, fold), map_location="cpu", weights_only=False)
    encoder = HeadEncoder(HeadEncoderConfig(widths=tuple(saved["widths"])))
    classifier = HeadClassifier(encoder, saved["n_classes"])
    classifier.load_state_dict(saved["classifier"])
    record = {**saved["record"], "minutes": saved["minutes"]}
    return classifier.eval(), np.asarray(saved["val_index"]), record


def morphometry_features(train: HeadSet, valid: HeadSet) -> tuple[np.ndarray, np.ndarray, int]:
    """The morphometry of every train and valid head (cached under var/ for this version of
    modeling/ml/morphometry.py) and the number of heads where none was found."""
    code = file_sha256(ROOT / "modeling" / "ml" / "morphometry.py")[:12]
    cache = WORK / f"morphometry-{code}-{pixel_size_um():.4f}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return saved["train"], saved["valid"], int(saved["missed"])
    m_train, missed_train = head_morphometry(train.images, pixel_size_um=pixel_size_um())
    m_valid, missed_valid = head_morphometry(valid.images, pixel_size_um=pixel_size_um())
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(cache, train=m_train, valid=m_valid, missed=missed_train + missed_valid)
    return m_train, m_valid, missed_train + missed_valid


Scorer = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def cross_fitted(
    y_train: np.ndarray, folds: list[np.ndarray], score: Scorer, n_valid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of class 1 on train (NaN for heads in no listed fold) and the
    mean over the folds' models of their probabilities on valid. ``score(k, fit, held_out)``
    gives fold k's model (fitted on train heads ``fit``) on ``held_out`` and on valid."""
    oof = np.full(len(y_train), np.nan)
    valid = np.zeros(n_valid)
    for k, held_out in enumerate(folds):
        fit = np.setdiff1d(np.arange(len(y_train)), held_out)
        oof[held_out], p_valid = score(k, fit, held_out)
        valid += p_valid / len(folds)
    return oof, valid


def evaluate(
    y_train: np.ndarray, oof: np.ndarray, y_valid: np.ndarray, p_valid: np.ndarray
) -> dict[str, Any]:
    """AUC on valid and accuracy / balanced accuracy at three operating points: the model's
    own (p > 0.5), and the thresholds that maximise accuracy or balanced accuracy on the
    out-of-fold train probabilities ``oof`` (NaN: not held out, skipped)."""
    held = ~np.isnan(oof)
    out: dict[str, Any] = {"auc": float(roc_auc_score(y_valid, p_valid))}
    out["own"] = {**decision_metrics(y_valid, p_valid > 0.5), "threshold": 0.5}
    for objective in OPERATING_POINTS:
        t = choose_threshold(y_train[held], oof[held], objective=objective)
        out[objective] = {**decision_metrics(y_valid, p_valid > t), "threshold": t}
    return out


def probe_scorer(train_features: list[np.ndarray], valid_features: list[np.ndarray],
                 y: np.ndarray) -> Scorer:  # fmt: skip
    """Fold k: the linear probe on fold k's features of its fit heads."""

    def score(k: int, fit: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f_train, f_valid = train_features[k], valid_features[k]
        probe = fit_probe(f_train[fit], y[fit])
        return (
            probe_probabilities(probe, f_train[held_out], 2)[:, 1],
            probe_probabilities(probe, f_valid, 2)[:, 1],
        )

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", type=int, default=0, help="also probe an encoder "
                        "pretrained on this many simulated heads (0: off)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train-fold", type=int, help="only train (and cache) this fold's "
                        "encoder, so the folds can train in parallel processes")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not MHSMA.is_dir():
        raise SystemExit(f"MHSMA is not at {MHSMA} (see the shared data's PROVENANCE.md)")
    started = time.perf_counter()
    train = read_head_dir(mhsma_dir("train"), labels=list(LABELS))
    if args.train_fold is not None:
        print(train_fold(train, seed=args.seed, fold=args.train_fold))
        return
    valid = read_head_dir(mhsma_dir("valid"), labels=list(LABELS))
    print(f"MHSMA: {len(train)} train, {len(valid)} valid heads of {train.images.shape[1:]} px")
    folds = fold_indices(train.labels, folds=FOLDS, seed=args.seed)
    y_t = {label: train.labels[label] for label in LABELS}
    y_v = {label: valid.labels[label] for label in LABELS}
    rows: dict[str, dict[str, dict[str, Any]]] = {}

    def add_row(name: str, score_of: Callable[[str], Scorer], use: list[np.ndarray]) -> None:
        rows[name] = {}
        for label in LABELS:
            oof, p_valid = cross_fitted(y_t[label], use, score_of(label), len(valid))
            rows[name][label] = evaluate(y_t[label], oof, y_v[label], p_valid)

    def constant_scorer(label: str) -> Scorer:
        def score(k: int, fit: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            share = float(y_t[label][fit].mean())  # the train share of class 1
            return np.full(len(held_out), share), np.full(len(valid), share)

        return score

    add_row("majority (train's)", constant_scorer, folds)

    t0 = time.perf_counter()
    m_train, m_valid, missed = morphometry_features(train, valid)
    t_morph = time.perf_counter() - t0
    found = 1 - missed / (len(train) + len(valid))
    add_row(
        "morphometry + LR",
        lambda label: probe_scorer([m_train] * FOLDS, [m_valid] * FOLDS, y_t[label]),
        folds,
    )

    # The cross-fitted encoders (trained by --train-fold; trained here if not cached).
    models, records = [], []
    for k in range(ENSEMBLE):
        train_fold(train, seed=args.seed, fold=k)
        classifier, val_index, record = load_fold(args.seed, k)
        assert np.array_equal(val_index, folds[k]), "the cached folds are not this run's"
        models.append(classifier)
        records.append(record)
    t0 = time.perf_counter()
    # Per model, per split: the encoder's features of the eight views (8, N, D), once.
    views = [[view_features(m.encoder, heads.images) for heads in (train, valid)] for m in models]

    def own_scorer(tta: bool) -> Callable[[str], Scorer]:
        def of_label(label: str) -> Scorer:
            def score(k: int, fit: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                head = models[k].heads[label]
                v_train, v_valid = views[k]
                return head_probability(head, v_train[:, held], tta), head_probability(
                    head, v_valid, tta
                )

            return score

        return of_label

    add_row("encoder from scratch, one, no TTA", own_scorer(False), folds[:1])
    add_row("encoder from scratch, one, TTA", own_scorer(True), folds[:1])
    add_row(f"encoder from scratch, {ENSEMBLE}, TTA", own_scorer(True), folds[:ENSEMBLE])

    f_train = [v_train.mean(axis=0) for v_train, _ in views]  # TTA features (N, D)
    f_valid = [v_valid.mean(axis=0) for _, v_valid in views]
    t_infer = time.perf_counter() - t0
    add_row(
        f"probe, pretrained encoder, {ENSEMBLE}, TTA",
        lambda label: probe_scorer(f_train, f_valid, y_t[label]),
        folds[:ENSEMBLE],
    )
    add_row(
        f"probe, encoder + morphometry, {ENSEMBLE}, TTA",
        lambda label: probe_scorer(
            [np.hstack([f, m_train]) for f in f_train],
            [np.hstack([f, m_valid]) for f in f_valid],
            y_t[label],
        ),
        folds[:ENSEMBLE],
    )

    if args.synthetic:
        from simulator.head_crops import write_head_dir

        # Simulated heads are ~9.2 px long at 0.5 µm/px: a 21 px crop drawn at 64 / 21 times
        # the magnification is 64 px with heads ~28 px long, like MHSMA's.
        from simulator.synthetic import SyntheticConfig

        synthetic_dir = write_head_dir(
            WORK / f"synthetic-{args.synthetic}", n=args.synthetic, seed=args.seed,
            config=SyntheticConfig(pixel_size_um=0.5 * 21 / 64), size=64,
        )  # fmt: skip
        synthetic = read_head_dir(synthetic_dir)
        t0 = time.perf_counter()
        pretrained = pretrain_encoder(synthetic, PretrainConfig(seed=args.seed), progress=True)
        print(f"synthetic pretraining: {(time.perf_counter() - t0) / 60:.1f} min")
        s_train = encode_heads(pretrained.encoder, train.images, tta=True)
        s_valid = encode_heads(pretrained.encoder, valid.images, tta=True)
        add_row(
            "probe, synthetic-pretrained encoder, TTA",
            lambda label: probe_scorer([s_train] * FOLDS, [s_valid] * FOLDS, y_t[label]),
            folds,
        )

    print(
        f"\nmorphometry found a head in {100 * found:.1f} % of the {len(train) + len(valid)} "
        f"images ({pixel_size_um():.3f} um/px; {missed} missed; {t_morph:.0f} s)"
    )
    for k, record in enumerate(records):
        print(
            f"fold {k} encoder: best epoch {record['best_epoch']} of {record['epochs_run']}, "
            f"{record['minutes']:.1f} min"
        )
    print(f"predictions and features with TTA: {t_infer:.0f} s")
    print_table(
        "accuracy operating point (threshold chosen on out-of-fold train): "
        "accuracy / balanced accuracy / AUC",
        rows, "accuracy", with_auc=True, paper=True,
    )  # fmt: skip
    print_table(
        "balanced-accuracy operating point: accuracy / balanced accuracy", rows,
        "balanced_accuracy",
    )  # fmt: skip
    print_table("the model's own operating point (p > 0.5): accuracy / balanced accuracy",
                rows, "own")  # fmt: skip
    print("\nthresholds (accuracy point):")
    for name, row in rows.items():
        print(
            f"  {name:<44}" + "".join(f" {row[lb]['accuracy']['threshold']:>8.3f}" for lb in LABELS)
        )
    print(
        f"\nseed {args.seed}; {args.threads} torch thread(s); {os.cpu_count()} CPU core(s); "
        f"total {(time.perf_counter() - started) / 60:.1f} min"
    )


def view_features(encoder: HeadEncoder, images: np.ndarray) -> np.ndarray:
    """(8, N, D) features of the eight rotations and mirrors of heads (N, H, W), the first
    view the heads as they are (the order of head_encoder.dihedral_views)."""
    stack = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    return np.stack([encode_heads(encoder, v[:, 0].numpy()) for v in dihedral_views(stack)])


@torch.no_grad()
def head_probability(head: torch.nn.Module, views: np.ndarray, tta: bool) -> np.ndarray:
    """The probability of class 1 of a label's linear layer on view features (8, N, D):
    averaged over the views (TTA), or of the first view only."""
    used = views if tta else views[:1]
    logits = head(torch.from_numpy(used).float())  # (V, N, 2)
    return logits.softmax(dim=2)[..., 1].mean(dim=0).double().numpy()


def print_table(title: str, rows: dict[str, dict[str, dict[str, Any]]], point: str, *,
                with_auc: bool = False, paper: bool = False) -> None:  # fmt: skip
    print(f"\nMHSMA valid, {title}")
    width = 23 if with_auc else 15
    print(f"{'':<44}" + "".join(f" {label:>{width}}" for label in LABELS))
    for name, row in rows.items():
        cells = []
        for label in LABELS:
            m = row[label][point]
            cell = f"{m['accuracy']:.3f} / {m['balanced_accuracy']:.3f}"
            cells.append(cell + (f" / {row[label]['auc']:.3f}" if with_auc else ""))
        print(f"{name:<44}" + "".join(f" {c:>{width}}" for c in cells))
    if paper:
        paper_cells = "".join(f" {PAPER_TEST_ACCURACY[label]:>{width}.3f}" for label in LABELS)
        print(f"{'paper (test accuracy)':<44}" + paper_cells)


if __name__ == "__main__":
    main()
