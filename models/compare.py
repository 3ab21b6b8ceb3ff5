"""Our numbers beside the published ones (models/published.json): every run writes the table, and says which
rows can be compared. Only rows measured under the WILDS scheme (its splits, its metrics) stand beside the
published WILDS rows; our own held-out locations are another test set."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

PUBLISHED = Path(__file__).with_name("published.json")


def published() -> list[dict]:
    return json.loads(PUBLISHED.read_text())["rows"]


def counterpart(name: str, used: bool) -> str:
    """The row of model `name` trained the other way round: without the supplemental rows where the run uses
    them, with them where it does not."""
    return f"{name}_{'without' if used else 'with'}_supplemental"


def backbones(columns: pd.Index) -> set[str]:
    """The embedding backbones of the feature table (families `embeddings_<backbone>`)."""
    return {str(c).split("__")[0].removeprefix("embeddings_") for c in columns if str(c).startswith("embeddings_")}


def compare(summary: dict, scheme: str, references: list[dict], in_use: set[str], ablations: set[str],
            unscored: dict[str, str], trained_with: set[str]) -> list[dict]:
    """Rows of the comparison, in percent: ours ("measured": every model and baseline of `summary` but the
    single-family `ablations`, on every scored split), ours not measured ("skipped", with the reason: a model
    these rows give nothing to learn, a family the data lacks, a split with no image), and the published ones
    that apply (the WILDS baselines, and the frozen-feature probes of the backbones in use). A row whose model
    trained on the supplemental rows (`trained_with`) used extra data, which the WILDS leaderboard admits in
    no standard entry: `standard` false, and not comparable with the published rows."""
    rows = [{"model": name, "kind": "measured", "protocol": scheme, "split": split,
             "accuracy": percent(m["accuracy"]), "macro_f1": percent(m["macro_f1"]),
             "accuracy_ci": percent(m["accuracy_ci"]), "macro_f1_ci": percent(m["macro_f1_ci"]),
             **({"chosen_minus_this": {k: {"difference": percent(d["difference"]), "ci": percent(d["ci"])}
                                       for k, d in m["vs_chosen"].items()}} if "vs_chosen" in m else {}),
             "standard": name not in trained_with, "comparable": scheme == "wilds" and name not in trained_with,
             "source": "this run"}
            for name, result in summary.items() if "splits" in result and name not in ablations
            for split, m in result["splits"].items()]
    rows += [{"model": name, "kind": "skipped", "protocol": scheme, "split": None, "reason": result["skipped"]}
             for name, result in summary.items() if "skipped" in result]
    rows += [{"model": "every model", "kind": "skipped", "protocol": scheme, "split": split, "reason": why}
             for split, why in unscored.items()]
    rows += [dict(r, kind="published", protocol="wilds", comparable=True) for r in references
             if r.get("backbone") is None or r["backbone"] in in_use]
    return rows


def f1_scores(per_class: dict) -> dict[str, float]:
    """Each class's F1 from its precision and recall (models.metrics' per-class entries)."""
    return {c: 2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"]) if m["precision"] + m["recall"]
            else 0.0 for c, m in per_class.items()}


def supplemental_effect(results: dict, pairs: dict[str, tuple[str, str]], split: str, camera_counts: pd.Series,
                        rare_max: int) -> list[dict]:
    """Rows of kind `supplemental`, in percent: each compared model trained with and without the supplemental
    rows (`pairs`: model -> (with, without) result names) on the headline `split`: accuracy and macro-F1 over
    every class present, and macro-F1 and mean recall over the rare ones: present in the split and with at most
    `rare_max` camera-trap training images (`camera_counts`, per category id), none included."""
    rows = []
    for model, names in pairs.items():
        for trained_with, name in zip((True, False), names):
            metrics = results[name]["splits"][split]
            per_class = metrics["per_class"]
            rare = [c for c in per_class if camera_counts.get(int(c), 0) <= rare_max]
            f1 = f1_scores(per_class)
            rows.append({"model": model, "kind": "supplemental", "row": name, "trained_with": trained_with,
                         "split": split, "accuracy": percent(metrics["accuracy"]),
                         "macro_f1": percent(metrics["macro_f1"]), "rare_max_camera_images": rare_max,
                         "rare_classes": len(rare),
                         "rare_macro_f1": percent(sum(f1[c] for c in rare) / len(rare)) if rare else None,
                         "rare_recall": percent(sum(per_class[c]["recall"] for c in rare) / len(rare))
                         if rare else None})
    return rows


def percent(value):
    """A share (or a [low, high] interval of shares) in percent, to one decimal."""
    return [percent(v) for v in value] if isinstance(value, list) else round(100 * value, 1)


def _cell(r: dict, metric: str) -> str:
    """`value [low, high]` of a measured row, the value alone of a published one."""
    value = "" if r[metric] is None else f"{r[metric]:.1f}"
    interval = r.get(f"{metric}_ci")
    return f"{value} [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else value


def comparison_markdown(rows: list[dict]) -> str:
    measured = [r for r in rows if r["kind"] == "measured"]
    scheme = measured[0]["protocol"] if measured else "?"
    lines = ["# This run beside published iWildCam2020-WILDS numbers", "",
             "Accuracy and macro-F1 in percent (macro-F1 over the classes present in the split, as WILDS computes "
             "it). *measured*: this run; *published*: cited from the source named, never run here. "
             + ("This run used the WILDS splits: its `test` and `id_test` rows stand beside the published ones "
                "(the published probes use the full frame embedding; ours use the PCA-reduced views, "
                "README, Comparison)." if scheme == "wilds" else
                "This run held out its own train locations (split.scheme: location): its rows are not comparable "
                "with the published ones; run with the WILDS layout and split.scheme: wilds for that."),
             "On the embedded sample or the rehearsal data the measured numbers rank our models on synthetic "
             "data and say nothing about camera traps.", "",
             "Brackets: 95% interval from 1,000 bootstrap replicates over the split's camera locations (whole "
             "cameras resampled; macro-F1 over the labels present in each replicate). *chosen minus this*: the "
             "chosen model's macro-F1 minus this row's on the same replicates (paired), with its 95% interval: an "
             "interval containing 0 is no evidence of a difference.", "",
             "| model | kind | protocol | split | accuracy [95% CI] | macro-F1 [95% CI] | chosen minus this, "
             "macro-F1 [95% CI] | source |", "|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["kind"] in ("measured", "published")):
        paired = r.get("chosen_minus_this", {}).get("macro_f1")
        versus = f"{paired['difference']:+.1f} [{paired['ci'][0]:+.1f}, {paired['ci'][1]:+.1f}]" if paired else ""
        extra = " (non-standard: supplemental data)" if r["kind"] == "measured" and not r["standard"] and \
            r["protocol"] == "wilds" else ""
        lines.append(f"| {r['model']}{extra} | {r['kind']} | {r['protocol']} | {r['split']} | "
                     f"{_cell(r, 'accuracy')} | {_cell(r, 'macro_f1')} | {versus} | {r['source']} |")
    lines += supplemental_markdown([r for r in rows if r["kind"] == "supplemental"])
    skipped = [r for r in rows if r["kind"] == "skipped"]
    if skipped:
        lines += ["", "## Not measured in this run", "",
                  "Rows that these data give nothing to fit, stop or score on, with the reason (no number is "
                  "written for them, not even a zero; single-family ablations included).", "",
                  "| model | split | reason |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['split'] or 'all'} | {r['reason']} |" for r in skipped]
    return "\n".join(lines) + "\n"


def calibration_markdown(record: dict, by_split: dict[str, dict], model: str, review_below: float) -> list[str]:
    """The calibration section: the reported model's expected calibration error on every scored split as the
    model gives its probabilities and calibrated, with the review rule; the methods measured on the out-of-fold
    rows of the training locations (calibration.json)."""
    how = (f"one temperature, T = {record['temperature']:.3f}, fitted on the out-of-fold probabilities of the chosen "
           f"family's tuning folds ({record['rows']} rows of training locations; no scored split; {record['why']})"
           if record["method"] == "temperature" else f"none ({record['why']})")
    lines = ["", "## Calibration", "",
             f"Top-label expected calibration error ({record.get('bins', '?')} equal-width bins) of {model}, with its "
             f"95% interval over the split's cameras; calibration: {how}. *review*: images whose served top "
             f"probability is below {review_below} (predictions.review_below), for a person to look at.", "",
             "| split | ECE as given [95% CI] | ECE as served [95% CI] | review share | accuracy of the rest |",
             "|---|---|---|---|---|"]

    def ece(e: dict) -> str:
        return f"{e['ece']:.3f} [{e['ece_ci'][0]:.3f}, {e['ece_ci'][1]:.3f}]"
    for split, r in by_split.items():
        rest = "" if r["accuracy_not_reviewed"] is None else f"{r['accuracy_not_reviewed']:.3f}"
        lines.append(f"| {split} | {ece(r['uncalibrated'])} | {ece(r['served'])} | {r['review_share']:.3f} | "
                     f"{rest} |")
    if "out_of_fold_ece" in record:
        lines += ["", "Out-of-fold ECE of the training locations, each calibrator fitted on the other location folds "
                      "of those rows (a temperature keeps every prediction; isotonic regression of the top-label "
                      f"confidence is measured, never applied; T = {record['temperature']:.3f}): " + ", ".join(
                          f"{k} {v:.3f}" for k, v in record["out_of_fold_ece"].items()) + "."]
    return lines


def supplemental_markdown(rows: list[dict]) -> list[str]:
    """The with/without section of the comparison (no section when the run had no supplemental row)."""
    if not rows:
        return []
    first = rows[0]
    lines = ["", "## With and without the supplemental rows", "",
             f"The same model, its tuned params and its PCA, fitted with and without the supplemental (iNaturalist) "
             f"rows, scored on the {first['split']} split. *rare*: the classes present there with at most "
             f"{first['rare_max_camera_images']} camera-trap training images (none included: classes only the photos "
             f"show). On the embedded sample the photos' class signal is ours by construction: the difference "
             f"shows the pipeline at work and says nothing about iNaturalist data.", "",
             "| model | supplemental rows | accuracy | macro-F1 | rare classes | rare macro-F1 | rare mean recall |",
             "|---|---|---|---|---|---|---|"]

    def cell(value) -> str:
        return "" if value is None else f"{value:.1f}"
    lines += [f"| {r['model']} | {'with' if r['trained_with'] else 'without'} | {cell(r['accuracy'])} | "
              f"{cell(r['macro_f1'])} | {r['rare_classes']} | {cell(r['rare_macro_f1'])} | {cell(r['rare_recall'])} |"
              for r in rows]
    return lines
