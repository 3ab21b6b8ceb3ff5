"""Evaluation plots: DVC plot data (csv/json, for `dvc plots show/diff`) and PNGs to look at directly."""
from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from infra.atomic import atomic_path, write_json, write_text  # noqa: E402

TOP_CLASSES = 15


def importance_by_family(booster: lgb.Booster) -> pd.Series:
    """Share of total split gain per feature family (columns are prefixed `<family>__`)."""
    gain = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    family = gain.index.str.split("__").str[0]
    by_family = gain.groupby(family).sum()
    return (by_family / by_family.sum()).sort_values(ascending=False)


def write_plots(y_true: np.ndarray, y_pred: np.ndarray, per_class: dict, booster: lgb.Booster,
                names: pd.Series, split: str, plots: Path, figures: Path) -> None:
    """The headline split's confusion (DVC plot data and a figure), per-class recall and importance by family."""
    label = lambda c: f"{int(c)} {names.get(int(c), '?')}"  # noqa: E731
    top = pd.Series(y_true).value_counts().index[:TOP_CLASSES]
    actual = [label(c) if c in top else "other" for c in y_true]
    predicted = [label(c) if c in top else "other" for c in y_pred]
    write_text(pd.DataFrame({"actual": actual, "predicted": predicted}).to_csv(index=False), plots / "confusion.csv")
    write_json([{"category": label(c), **v} for c, v in per_class.items()], plots / "per_class_recall.json")
    shares = importance_by_family(booster)
    write_json([{"family": f, "gain_share": float(v)} for f, v in shares.items()], plots / "importance_by_family.json")

    order = sorted(set(actual) | set(predicted))
    matrix = pd.crosstab(pd.Categorical(actual, order), pd.Categorical(predicted, order), dropna=False)
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(matrix.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    for (i, j), v in np.ndenumerate(matrix.to_numpy()):
        if v:
            ax.text(j, i, int(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{split}: confusion matrix")
    _save(fig, figures / "confusion.png")

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(shares.index[::-1], shares.to_numpy()[::-1])
    ax.set_xlabel("share of total split gain")
    ax.set_title("Feature importance by family")
    _save(fig, figures / "importance_by_family.png")


def write_interval_plots(summary: dict, split: str, reported: str, plots: Path, figures: Path) -> None:
    """Every measured row's accuracy and macro-F1 on `split` with their 95% location-bootstrap intervals: DVC
    plot data (the interval's ends as fields) and a figure with error bars, the reported model marked."""
    rows = [{"model": name, **{k: m["splits"][split][k] for k in ("accuracy", "macro_f1")},
             **{f"{k}_{end}": m["splits"][split][f"{k}_ci"][i] for k in ("accuracy", "macro_f1")
                for i, end in enumerate(("low", "high"))}}
            for name, m in summary.items() if split in m.get("splits", {})]
    rows.sort(key=lambda r: r["macro_f1"])
    write_json(rows, plots / "intervals.json")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * len(rows) + 1.5), sharey=True)
    for ax, metric in zip(axes, ("accuracy", "macro_f1")):
        # the interval as a line from its ends: a percentile interval need not contain the split's own value
        for y, r in enumerate(rows):
            colour = "tab:red" if r["model"] == reported else "tab:blue"
            ax.plot([r[f"{metric}_low"], r[f"{metric}_high"]], [y, y], color=colour, marker="|")
            ax.plot(r[metric], y, "o", color=colour, markersize=3)
        ax.set_xlabel(f"{metric} (95% interval, bootstrap over cameras)")
    axes[0].set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=7)
    fig.suptitle(f"{split}: every measured model, the reported one in red")
    _save(fig, figures / "intervals.png")


def write_supplemental_plot(with_rows: dict, without_rows: dict, camera_counts: pd.Series, names: pd.Series,
                            split: str, plots: Path, figures: Path) -> None:
    """The chosen model's recall per class on `split` trained with the supplemental rows minus without (per-class
    entries of models.metrics), classes with the fewest camera-trap training images first: DVC plot data and a
    figure. No class (the run has no supplemental row): an empty list, and a figure saying so."""
    rows = [{"category": f"{int(c)} {names.get(int(c), '?')}",
             "camera_training_images": int(camera_counts.get(int(c), 0)), "recall_with": with_rows[c]["recall"],
             "recall_without": without_rows[c]["recall"],
             "recall_change": with_rows[c]["recall"] - without_rows[c]["recall"]} for c in with_rows]
    rows.sort(key=lambda r: (r["camera_training_images"], r["category"]))
    write_json(rows, plots / "supplemental_recall_change.json")
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(rows) + 1.5))
    if rows:
        labels = [f"{r['category']} ({r['camera_training_images']})" for r in rows][::-1]
        change = [r["recall_change"] for r in rows][::-1]
        ax.barh(labels, change, color=["tab:green" if v > 0 else "tab:red" for v in change])
        ax.axvline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("recall with the supplemental rows minus without")
    else:
        ax.text(0.5, 0.5, "no supplemental rows in this run", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"{split}: per-class recall change (camera-trap training images)")
    _save(fig, figures / "supplemental_recall_change.png")


def write_reliability_plot(report: dict, split: str, plots: Path, figures: Path) -> None:
    """The reported model's reliability diagram on `split` (models.calibration.scored_calibration): per confidence
    bin, accuracy against mean confidence, as the model gives them and as served: DVC plot data and a figure."""
    rows = [dict(point, probabilities=kind) for kind, points in report["reliability"].items() for point in points]
    write_json(rows, plots / "reliability.json")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    for kind, points in report["reliability"].items():
        ece = report[kind]
        ax.plot([p["confidence"] for p in points], [p["accuracy"] for p in points], "o-", markersize=3,
                label=f"{kind}: ECE {ece['ece']:.3f} [{ece['ece_ci'][0]:.3f}, {ece['ece_ci'][1]:.3f}]")
    ax.set_xlabel("top-class probability (bin mean)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.set_title(f"{split}: reliability of the reported model")
    _save(fig, figures / "reliability.png")


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
