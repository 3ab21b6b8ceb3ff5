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


def backbones(columns: pd.Index) -> set[str]:
    """The embedding backbones of the feature table (families `embeddings_<backbone>`)."""
    return {str(c).split("__")[0].removeprefix("embeddings_") for c in columns if str(c).startswith("embeddings_")}


def compare(summary: dict, scheme: str, references: list[dict], in_use: set[str], ablations: set[str],
            unscored: dict[str, str]) -> list[dict]:
    """Rows of the comparison, in percent: ours ("measured": every model and baseline of `summary` but the
    single-family `ablations`, on every scored split), ours not measured ("skipped", with the reason: a model
    these rows give nothing to learn, a family the data lacks, a split with no image), and the published ones
    that apply (the WILDS baselines, and the frozen-feature probes of the backbones in use)."""
    rows = [{"model": name, "kind": "measured", "protocol": scheme, "split": split,
             "accuracy": percent(m["accuracy"]), "macro_f1": percent(m["macro_f1"]),
             "accuracy_ci": percent(m["accuracy_ci"]), "macro_f1_ci": percent(m["macro_f1_ci"]),
             **({"chosen_minus_this": {k: {"difference": percent(d["difference"]), "ci": percent(d["ci"])}
                                       for k, d in m["vs_chosen"].items()}} if "vs_chosen" in m else {}),
             "comparable": scheme == "wilds", "source": "this run"}
            for name, result in summary.items() if "splits" in result and name not in ablations
            for split, m in result["splits"].items()]
    rows += [{"model": name, "kind": "skipped", "protocol": scheme, "split": None, "reason": result["skipped"]}
             for name, result in summary.items() if "skipped" in result]
    rows += [{"model": "every model", "kind": "skipped", "protocol": scheme, "split": split, "reason": why}
             for split, why in unscored.items()]
    rows += [dict(r, kind="published", protocol="wilds", comparable=True) for r in references
             if r.get("backbone") is None or r["backbone"] in in_use]
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
    for r in (r for r in rows if r["kind"] != "skipped"):
        paired = r.get("chosen_minus_this", {}).get("macro_f1")
        versus = f"{paired['difference']:+.1f} [{paired['ci'][0]:+.1f}, {paired['ci'][1]:+.1f}]" if paired else ""
        lines.append(f"| {r['model']} | {r['kind']} | {r['protocol']} | {r['split']} | {_cell(r, 'accuracy')} | "
                     f"{_cell(r, 'macro_f1')} | {versus} | {r['source']} |")
    skipped = [r for r in rows if r["kind"] == "skipped"]
    if skipped:
        lines += ["", "## Not measured in this run", "",
                  "Rows that these data give nothing to fit, stop or score on, with the reason (no number is "
                  "written for them, not even a zero; single-family ablations included).", "",
                  "| model | split | reason |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['split'] or 'all'} | {r['reason']} |" for r in skipped]
    return "\n".join(lines) + "\n"
