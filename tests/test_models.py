"""Splits, tuning, model files, baselines and metrics on small hand-built cases."""
import numpy as np
import optuna
import pandas as pd
import pytest

from models import baselines, lgbm
from models.metrics import classification_metrics, smooth_by_sequence
from models.split import holdout_locations, location_folds
from models.tune import cross_validate, tune

CFG = dict(class_weight="balanced", cv_folds=3, max_rounds=30, early_stopping_rounds=5,
           fixed={"num_threads": 1, "verbose": -1},
           search_space={"learning_rate": {"low": 0.05, "high": 0.3, "log": True},
                         "num_leaves": {"low": 3, "high": 15, "int": True},
                         "max_bin": {"choices": [31, 63]}},
           tune={"n_trials": 2, "timeout_s": 60, "pruning": True, "storage": None})


def toy(n=240, seed=0):
    """Three classes separable by two features, 12 locations."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = pd.DataFrame({"a": y + rng.normal(0, 0.6, n), "b": (y == 2) + rng.normal(0, 0.6, n),
                      "noise": rng.normal(0, 1, n)})
    return x, y, rng.integers(0, 12, n)


def test_holdout_takes_a_quarter_of_the_locations_whole_and_seeded():
    locations = pd.Series(np.random.default_rng(1).integers(0, 30, 600))
    held = holdout_locations(locations, 0.25, seed=3)
    assert len(held) == 8 and set(held) <= set(locations)  # ceil(0.25 x 30) whole locations
    assert holdout_locations(locations, 0.25, seed=3) == held
    assert holdout_locations(locations, 0.25, seed=4) != held


def test_tuning_folds_validate_each_location_once_and_never_fit_on_it():
    groups = np.random.default_rng(1).integers(0, 22, 500)
    folds = location_folds(groups, 3)
    validated = np.concatenate([val for _, val in folds])
    assert len(folds) == 3 and sorted(validated) == list(range(500))  # every row validated exactly once
    for fit, val in folds:
        assert set(groups[fit]).isdisjoint(groups[val]) and len(set(groups[val])) >= 22 // 3


def test_model_text_file_reloads_and_predicts_identically(tmp_path):
    x, y, _ = toy()
    labels = pd.Series(np.array([0, 24, 374])[y])
    booster = lgbm.fit(x, labels, {"num_threads": 1, "num_leaves": 7}, 20, seed=0, class_weight="none",
                       classes=[0, 24, 374])
    lgbm.save(booster, [0, 24, 374], tmp_path / "m.txt")
    assert (tmp_path / "m.txt").read_text().startswith("tree")
    loaded, classes = lgbm.load(tmp_path / "m.txt")
    assert classes == [0, 24, 374]
    np.testing.assert_array_equal(lgbm.predict_proba(loaded, x), lgbm.predict_proba(booster, x))


def test_study_resumes_to_its_trial_target(tmp_path):
    x, y, groups = toy()
    cfg = dict(CFG, tune=dict(CFG["tune"], storage=f"sqlite:///{tmp_path}/s.db"))
    params, rounds, study = tune(x, y, groups, cfg, 3, seed=0)
    assert len(study.trials) == 2 and 1 <= rounds <= 30 and params["num_threads"] == 1
    cfg["tune"]["n_trials"] = 3
    _, _, resumed = tune(x, y, groups, cfg, 3, seed=0)
    assert resumed.study_name == study.study_name and len(resumed.trials) == 3


def test_pruning_stops_a_trial_from_lightgbm_iterations():
    x, y, groups = toy()
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss prunes
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="iteration 0"):
        cross_validate(x, y, groups, {"num_threads": 1, "verbose": -1}, CFG, 3, 0, trial)


def test_metrics_on_a_hand_built_case():
    classes = [0, 1, 2]
    y_true = np.array([0, 0, 1, 1, 3])             # class 3 was never seen in training
    proba = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.6, .3, .1], [.1, .1, .8]])
    seqs = np.array(["s1", "s1", "s2", "s2", "s3"])
    m = classification_metrics(y_true, proba, classes, seqs)
    assert m["accuracy"] == pytest.approx(2 / 5)
    # per class present: 0 -> P 1/2 R 1/2 F 1/2; 1 -> P 1/2 R 1/2 F 1/2; 3 -> F 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert m["unseen_class_images"] == 1
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([.8, .2, .8, .3])))
    # sequences: s1 mean [.5,.4,.1] -> 0 (label 0) right; s2 mean [.35,.55,.1] -> 1 right; s3 wrong
    assert m["sequence_accuracy"] == pytest.approx(2 / 3) and m["n_sequences"] == 3
    assert m["per_class"]["1"] == {"precision": 0.5, "recall": 0.5, "support": 2}


def test_sequence_smoothing_gives_every_frame_the_sequence_mean():
    proba = np.array([[.9, .1], [.2, .8], [.4, .6]])
    smoothed = smooth_by_sequence(proba, np.array(["a", "a", "b"]))
    np.testing.assert_allclose(smoothed, [[.55, .45], [.55, .45], [.4, .6]])


def test_detector_only_rule():
    y_fit = pd.Series([0, 0, 0, 24, 24, 7])
    top = pd.Series([0.9, 0.2, np.nan, 0.5])
    proba, classes = baselines.detector_only(top, y_fit, 0.5)
    assert classes == [0, 7, 24] and np.asarray(classes)[proba.argmax(axis=1)].tolist() == [24, 0, 0, 24]
    assert baselines.majority_class(y_fit, 2).tolist() == [0, 0]


def test_detector_only_rule_without_any_empty_training_image():
    """Many projects drop empties before labelling: the rule still says "empty" below the threshold."""
    y_fit = pd.Series([24, 24, 7])
    top = pd.Series([0.9, 0.2])
    proba, classes = baselines.detector_only(top, y_fit, 0.5)
    assert classes == [0, 7, 24] and np.asarray(classes)[proba.argmax(axis=1)].tolist() == [24, 0]
    m = classification_metrics(np.array([24, 7]), proba, classes, np.array(["a", "b"]))
    assert m["accuracy"] == 0.5


def test_hist_gradient_boosting_baseline_ignores_columns_empty_in_training():
    x, y, _ = toy()
    x["never_seen"] = np.nan  # e.g. a Landsat quarter without a clear scene at any training camera
    proba, classes = baselines.hist_gradient_boosting(x, pd.Series(y), x, {"num_leaves": 7}, 10, "none", 0)
    assert proba.shape == (len(x), 3) and classes == [0, 1, 2]


def test_a_value_only_change_to_the_training_data_starts_a_new_study(tmp_path):
    """Same columns and rows, other values (e.g. a new crop margin): the old study's best params and loss
    say nothing about these features, so its trials must not be reused."""
    x, y, groups = toy()
    cfg = dict(CFG, tune=dict(CFG["tune"], storage=f"sqlite:///{tmp_path}/s.db"))
    _, _, first = tune(x, y, groups, cfg, 3, seed=0)
    _, _, again = tune(x, y, groups, cfg, 3, seed=0)
    assert again.study_name == first.study_name and len(again.trials) == 2  # nothing new to run
    shifted = x.assign(a=x["a"] + np.random.default_rng(5).normal(0, 0.5, len(x)))
    _, _, changed = tune(shifted, y, groups, cfg, 3, seed=0)
    assert changed.study_name != first.study_name and len(changed.trials) == 2
    assert changed.best_value != first.best_value
    relabelled, regrouped = y.copy(), groups.copy()
    relabelled[:5] = (relabelled[:5] + 1) % 3
    regrouped[:5] = (regrouped[:5] + 1) % 12
    names = {tune(x, relabelled, groups, cfg, 3, seed=0)[2].study_name,
             tune(x, y, regrouped, cfg, 3, seed=0)[2].study_name}
    assert len(names | {first.study_name}) == 3


def test_the_key_order_of_the_search_space_changes_neither_the_study_nor_its_trials():
    """params.yaml rewritten with sorted keys (as yaml.safe_dump does) is the same experiment."""
    x, y, groups = toy()
    reordered = dict(CFG, search_space=dict(reversed(list(CFG["search_space"].items()))))
    _, _, first = tune(x, y, groups, CFG, 3, seed=0)
    _, _, second = tune(x, y, groups, reordered, 3, seed=0)
    assert second.study_name == first.study_name
    assert [t.params for t in second.trials] == [t.params for t in first.trials]
    assert [t.value for t in second.trials] == [t.value for t in first.trials]
