"""`make compare`: DVC's experiments of a commit grouped by the params that differ (seeds aside), summarised over
the seeds, from what `dvc exp show --json` writes."""
import json

import numpy as np
import pytest
from scipy import stats

from models.experiments import CHOSEN, compare_runs, distinct, markdown, records


def run(name: str, seed: int, families: bool, accuracy: float, macro_f1: float) -> dict:
    """One row of `dvc exp show --json` as DVC 3 writes it."""
    params = {"split": {"seed": seed, "scheme": "location"}, "features": {"landsat_summary": families},
              "execution": {"threads": seed}}  # how a run ran: never a group of its own
    metrics = {"accuracy": accuracy, "macro_f1": macro_f1, "model": "reranker_all_families_sequence_smoothed"}
    baselines = {"majority_class": {"accuracy": 0.4, "macro_f1": 0.1 * seed},
                 "hist_gradient_boosting": {"skipped": "skipped: over the cap"}}
    return {"rev": f"rev{name}", "name": name, "error": None, "experiments": None, "data": {
        "params": {"params.yaml": {"data": params}},
        "metrics": {"reports/metrics.json": {"data": metrics}, "reports/baselines.json": {"data": baselines}}}}


def test_runs_group_by_what_differs_and_pool_over_seeds():
    seeds = [run(f"s{k}", k, True, acc, f1) for k, acc, f1 in ((1, 0.9, 0.8), (2, 0.8, 0.7), (3, 0.7, 0.9))]
    without = [run(f"n{k}", k, False, 0.5, 0.5) for k in (1, 2)]
    again = run("s7", 7, True, 0.95, 0.85)  # an experiment of the commit's own params: the same run
    again["data"]["params"]["params.yaml"]["data"]["execution"]["threads"] = 2  # on other threads
    head = dict(run("main", 7, True, 0.95, 0.85), experiments=[{"revs": seeds + without + [again], "executor": None}])
    failed = dict(run("broken", 4, True, 0, 0), error={"msg": "failed"})
    workspace = dict(run("workspace", 3, True, 0.7, 0.9), rev="workspace")
    found, missing = records([workspace, head, {"rev": "x", "experiments": [{"revs": [failed]}]}])
    assert [r["name"] for r in found] == ["main", "s1", "s2", "s3", "n1", "n2", "s7"] and missing == ["x", "broken"]
    found, repeats = distinct(found)
    assert [r["name"] for r in found] == ["main", "s1", "s2", "s3", "n1", "n2"]
    assert repeats == ["s7 (the params of main)"]
    groups = compare_runs(found)
    assert [g["params"] for g in groups] == [{"features.landsat_summary": True}, {"features.landsat_summary": False}]
    chosen = groups[0]["rows"][CHOSEN]
    assert [s["split.seed"] for s in chosen["seeds"]] == [1, 2, 3, 7]
    values = [0.9, 0.8, 0.7, 0.95]
    assert chosen["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert chosen["accuracy"]["sd"] == pytest.approx(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert chosen["accuracy"]["ci"] == pytest.approx([np.mean(values) - half, 1.0])  # a share: clipped at 1
    assert np.mean(values) + half > 1
    assert set(groups[0]["rows"]) == {CHOSEN, "majority_class"}  # a skipped row has no number to pool
    text = markdown(groups, missing, repeats)
    assert "## `features.landsat_summary=true`" in text and "Left out (no params or metrics" in text
    assert "Left out as repeats (counted once): s7 (the params of main)." in text
    assert "| majority_class | 0.400 / 0.100 | 0.400 / 0.200 | 0.400 / 0.300 | 0.400 / 0.700 | 0.400 ± 0.000 /" in text
    single = compare_runs(found[:1])
    assert single[0]["rows"][CHOSEN]["accuracy"] == {"mean": 0.95, "sd": None, "ci": None}
    assert "(one seed) | needs two seeds |" in markdown(single, [])
    json.dumps(groups, allow_nan=False)  # strict JSON: no NaN for a one-seed group


def test_the_chosen_model_the_other_way_round_is_a_row_of_its_own_per_seed():
    """Trained with the supplemental rows, each run's chosen model (whichever family that seed chose) beside its
    own row without them; a run without photos has no such row, and a group switched off gets the `with` row."""
    def with_photos(name: str, seed: int, used: bool, family: str, other: tuple[float, float] | None) -> dict:
        entry = run(name, seed, True, 0.9, 0.8)
        data = entry["data"]["metrics"]
        data["reports/metrics.json"]["data"].update(model=f"{family}_all_families_sequence_smoothed",
                                                    supplemental_trained_with=used, supplemental_rows=40,
                                                    supplemental_weight=0.1)
        if other:
            way = "without" if used else "with"
            data["reports/baselines.json"]["data"][f"{family}_all_families_{way}_supplemental_sequence_smoothed"] = \
                {"accuracy": other[0], "macro_f1": other[1]}
        return entry

    runs = [with_photos("s1", 1, True, "reranker", (0.7, 0.6)), with_photos("s2", 2, True, "lightgbm_multiclass",
                                                                             (0.5, 0.4)),
            with_photos("s3", 3, True, "reranker", None)]
    found, _ = records(runs)
    row = compare_runs(found)[0]["rows"]["chosen model without the supplemental rows"]
    assert [(s["run"], s["model"], s["accuracy"]) for s in row["seeds"]] == [
        ("s1", "reranker_all_families_without_supplemental_sequence_smoothed", 0.7),
        ("s2", "lightgbm_multiclass_all_families_without_supplemental_sequence_smoothed", 0.5)]
    assert row["macro_f1"]["mean"] == pytest.approx(0.5)
    assert "| chosen model without the supplemental rows | 0.700 / 0.600 (reranker) | 0.500 / 0.400 " \
           "(lightgbm_multiclass) |  |" in markdown(compare_runs(found), [])
    off, _ = records([with_photos("n1", 1, False, "reranker", (0.95, 0.9))])
    assert set(compare_runs(off)[0]["rows"]) == {CHOSEN, "chosen model with the supplemental rows", "majority_class",
                                                 "reranker_all_families_with_supplemental_sequence_smoothed"}
