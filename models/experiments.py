"""Compare DVC experiments over seeds: `make compare` (or `python -m models.experiments`).

Experiments are run by DVC itself (`dvc exp run -S split.seed=1`, or queued: `dvc exp run --queue -S
'split.seed=1,2,3'` then `dvc queue start`); this reads what `dvc exp show --json` reports for the current
commit and its experiments, and writes reports/experiments.md and .json: the experiments grouped by the
params that differ between them other than the seeds (a family switched off, another backbone, another
precision), and per group and model row, the headline split's accuracy and macro-F1 on each seed, their
mean and standard deviation, and a 95% interval of the mean over the seeds (Student's t): a difference
between two groups smaller than these intervals is noise of the split, not of the model.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from infra.atomic import write_json, write_text
from models.compare import counterpart

SEEDS = ("split.seed", "train.seed")  # what varies within a group
NOT_COMPARED = ("execution.",)        # how a run ran, never what it computed
METRICS, BASELINES = "reports/metrics.json", "reports/baselines.json"
CHOSEN = "chosen model (metrics.json)"
SMOOTHED = "_sequence_smoothed"


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a.b": value} of a nested params dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def records(show: list[dict]) -> tuple[list[dict], list[str]]:
    """(the commit's run and each of its experiments with params and both metric files; the names of those
    without, e.g. failed runs) from `dvc exp show --json`. The workspace row repeats one of them: left out."""
    found, missing = [], []
    entries = [(e.get("name") or e["rev"], e) for e in show if e["rev"] != "workspace"]
    entries += [(r.get("name") or r["rev"], r) for e in show for group in (e.get("experiments") or [])
                for r in group.get("revs", [])]
    for name, entry in entries:
        data = entry.get("data") or {}
        metrics = {path: (data.get("metrics") or {}).get(path, {}).get("data") for path in (METRICS, BASELINES)}
        params = (data.get("params") or {}).get("params.yaml", {}).get("data")
        if entry.get("error") or params is None or not all(metrics.values()):
            missing.append(name)
            continue
        found.append({"name": name, "params": flatten(params), "metrics": metrics[METRICS],
                      "baselines": metrics[BASELINES]})
    return found, missing


def distinct(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """The runs with params of their own (execution settings aside), and each run repeating an earlier one's
    params, named with it: the same commit and params compute the same numbers, so the commit's own run beside
    an experiment of its params (`dvc exp run -S split.seed=7` where params.yaml says 7) is one seed, not two."""
    first: dict[str, str] = {}
    kept, repeats = [], []
    for run in runs:
        key = json.dumps({k: v for k, v in run["params"].items() if not k.startswith(NOT_COMPARED)}, sort_keys=True)
        if key in first:
            repeats.append(f"{run['name']} (the params of {first[key]})")
        else:
            first[key] = run["name"]
            kept.append(run)
    return kept, repeats


def varying(runs: list[dict]) -> list[str]:
    """The params that differ between the runs, seeds and execution settings aside."""
    keys = sorted({k for r in runs for k in r["params"]})
    return [k for k in keys if not k.startswith(NOT_COMPARED) and k not in SEEDS
            and len({json.dumps(r["params"].get(k), sort_keys=True) for r in runs}) > 1]


def mean_interval(values: list[float]) -> dict:
    """Mean, standard deviation and the 95% t interval of the mean of per-seed values (None from one seed),
    clipped to [0, 1], where accuracy and macro-F1 live."""
    n, mean = len(values), float(np.mean(values))
    if n < 2:
        return {"mean": mean, "sd": None, "ci": None}
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    return {"mean": mean, "sd": sd, "ci": [max(mean - half, 0.0), min(mean + half, 1.0)]}  # shares: within [0, 1]


def _spread(a: dict, f: dict) -> tuple[str, str]:
    """`mean ± sd` and the interval of accuracy / macro-F1, or what one seed cannot give."""
    if a["sd"] is None:
        return f"{a['mean']:.3f} / {f['mean']:.3f} (one seed)", "needs two seeds"
    return (f"{a['mean']:.3f} ± {a['sd']:.3f} / {f['mean']:.3f} ± {f['sd']:.3f}",
            f"[{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] / [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]")


def other_way(run: dict) -> dict | None:
    """The baselines row of the run's chosen model trained the other way round as to the supplemental rows
    (with its name as `model`), None where the run has none (no supplemental rows)."""
    chosen, used = run["metrics"]["model"], run["metrics"].get("supplemental_trained_with", False)
    base = chosen.removesuffix(SMOOTHED)
    name = counterpart(base, used) + chosen[len(base):]
    row = run["baselines"].get(name, {})
    return dict(row, model=name) if "accuracy" in row else None


def compare_runs(runs: list[dict]) -> list[dict]:
    """One entry per group of runs (params alike but the seeds): per model row, per-seed and pooled figures."""
    keys = varying(runs)
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(json.dumps({k: run["params"].get(k) for k in keys}, sort_keys=True), []).append(run)
    out = []
    for key, members in groups.items():
        members.sort(key=lambda r: tuple(str(r["params"].get(s)) for s in SEEDS))
        rows = {CHOSEN: [(r, r["metrics"]) for r in members]}
        other = [(r, row) for r in members if (row := other_way(r))]
        if other:  # the runs of a group train alike as to the supplemental rows (train.supplemental, split.scheme)
            used = other[0][0]["metrics"]["supplemental_trained_with"]
            rows[f"chosen model {'without' if used else 'with'} the supplemental rows"] = other
        for name in dict.fromkeys(n for r in members for n, m in r["baselines"].items() if "accuracy" in m):
            rows[name] = [(r, r["baselines"][name]) for r in members if "accuracy" in r["baselines"].get(name, {})]
        out.append({"params": json.loads(key), "runs": [r["name"] for r in members], "rows": {
            name: {"seeds": [{s: r["params"].get(s) for s in SEEDS} | {
                       "run": r["name"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                       **({"model": m["model"]} if "model" in m else {})} for r, m in entries],
                   **{metric: mean_interval([m[metric] for _, m in entries]) for metric in ("accuracy", "macro_f1")}}
            for name, entries in rows.items()}})
    return out


def markdown(groups: list[dict], missing: list[str], repeats: list[str] = ()) -> str:
    lines = ["# Experiments over seeds", "",
             "From `dvc exp show --json` (`make compare`). Per group of experiments (the params that differ, seeds "
             "aside), each model row's headline-split accuracy / macro-F1: mean ± sd over the seeds, and the 95% "
             "interval of the mean (Student's t over seeds). On the embedded sample these rank our models on "
             "synthetic data and say nothing about camera traps."]
    if missing:
        lines += ["", f"Left out (no params or metrics, e.g. a failed run): {', '.join(missing)}."]
    if repeats:
        lines += ["", f"Left out as repeats (counted once): {', '.join(repeats)}."]
    for group in groups:
        title = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in group["params"].items()) or "one group"
        runs = group["rows"][CHOSEN]["seeds"]  # every run of the group has a chosen model
        headers = [", ".join(f"{k}={s[k]}" for k in SEEDS) for s in runs]
        lines += ["", f"## {title}", "", f"{len(runs)} runs ({', '.join(s['run'] for s in runs)}). A row with "
                  "empty cells exists on some seeds only (the ablations of the family chosen on that seed).", "",
                  "| model | " + " | ".join(headers) + " | mean ± sd | 95% interval of the mean |",
                  "|---|" + "---|" * (len(runs) + 2)]
        for name, row in group["rows"].items():
            by_run = {s["run"]: s for s in row["seeds"]}
            cells = [f"{s['accuracy']:.3f} / {s['macro_f1']:.3f}"
                     + (f" ({s['model'].split('_all_families')[0]})" if "model" in s else "")
                     if (s := by_run.get(r["run"])) else "" for r in runs]
            spread, interval = _spread(row["accuracy"], row["macro_f1"])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread} | {interval} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    show = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True,
                                     text=True).stdout)
    runs, missing = records(show)
    if not runs:
        sys.exit("compare: dvc exp show lists no run with reports/metrics.json and reports/baselines.json")
    runs, repeats = distinct(runs)
    groups = compare_runs(runs)
    write_json({"groups": groups, "left_out": missing, "repeats": repeats}, Path("reports/experiments.json"))
    write_text(markdown(groups, missing, repeats), Path("reports/experiments.md"))
    print(markdown(groups, missing, repeats))


if __name__ == "__main__":
    main()
