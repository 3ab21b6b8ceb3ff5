"""Splits, tuning, model files, baselines and metrics on small hand-built cases."""
import numpy as np
import optuna
import pandas as pd
import pytest

from models import baselines, lgbm
from models.metrics import classification_metrics, smooth_by_sequence
from models.rerank import LOG_FLOOR, Proposer, Reranker, candidates, proposer_columns
from models.split import holdout_locations, location_folds
from models.tune import cross_validate, tune, tuning_data, tuning_rows

CFG = dict(class_weight="balanced", cv_folds=3, max_rounds=30, early_stopping_rounds=5, candidates=2,
           fixed={"num_threads": 1, "verbose": -1},
           search_space={"learning_rate": {"low": 0.05, "high": 0.3, "log": True},
                         "num_leaves": {"low": 3, "high": 15, "int": True},
                         "max_bin": {"choices": [31, 63]}},
           tune={"n_trials": 2, "timeout_s": 60, "pruning": True, "storage": None, "max_rows": None})


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
        cross_validate(tuning_data(x, y, groups, CFG, 3), {"num_threads": 1, "verbose": -1}, CFG, 0, trial)


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


def long_tail(n=1500, n_classes=40, seed=0):
    """Many classes with a long tail: the last ones have one or two rows at one camera."""
    rng = np.random.default_rng(seed)
    freq = 1 / np.arange(1, n_classes + 1) ** 1.5
    y = rng.choice(n_classes, n, p=freq / freq.sum())
    y[:n_classes] = np.arange(n_classes)  # every class at least once
    centres = rng.normal(0, 1.5, (n_classes, 6))
    x = pd.DataFrame(centres[y] + rng.normal(0, 1, (n, 6)), columns=[f"a__{i}" for i in range(3)] +
                     [f"b__{i}" for i in range(3)])
    x.iloc[::7, 0] = np.nan
    return x, pd.Series(np.arange(100, 100 + n_classes)[y]), rng.integers(0, 15, n)


def test_proposer_scores_classes_it_saw_and_floors_the_others():
    x, y, _ = long_tail()
    codes = (y - 100).to_numpy()
    proposer = Proposer.fit(x.to_numpy(np.float32), codes, 45, balanced=True)
    lp = proposer.log_proba(x.to_numpy(np.float32))
    assert lp.shape == (len(x), 45) and np.allclose(np.exp(lp[:, :40]).sum(axis=1), 1, atol=1e-4)
    assert (lp[:, 40:] == LOG_FLOOR).all()  # classes 40..44 never seen
    # separable centres: the true class is among the top 5 of 40 for most rows; frequency priors (not
    # balanced) trade the rare classes' recall for accuracy, above the majority class's 42%
    assert (candidates(lp, 5) == codes[:, None]).any(axis=1).mean() > 0.9
    frequency = Proposer.fit(x.to_numpy(np.float32), codes, 45, balanced=False).log_proba(x.to_numpy(np.float32))
    assert (frequency.argmax(axis=1) == codes).mean() > 0.7 > (lp.argmax(axis=1) == codes).mean()


def test_proposer_on_features_without_any_spread_scores_by_prior_alone():
    """A family can be constant over a fold's rows (a site-level feature at few cameras): no crash."""
    y = np.array([0, 0, 1, 2, 2, 2])
    lp = Proposer.fit(np.ones((6, 3), np.float32), y, 3, balanced=False).log_proba(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(np.exp(lp[0]), [2 / 6, 1 / 6, 3 / 6], rtol=1e-5)


def test_candidates_are_the_top_k_likeliest_first_and_deterministic_on_ties():
    lp = np.log(np.array([[.1, .5, .2, .2], [.25, .25, .25, .25]]))
    assert candidates(lp, 3).tolist() == [[1, 2, 3], [0, 1, 2]]
    assert candidates(lp, 9).shape == (2, 4)


def test_one_proposer_per_family_only_when_there_are_several():
    assert proposer_columns(["a__x", "b__y", "a__z"]) == {"all": [0, 1, 2], "a": [0, 2], "b": [1]}
    assert proposer_columns(["a__x", "a__z"]) == {"all": [0, 1]}


def test_reranker_on_a_long_tail_predicts_candidates_only_and_reloads_identically(tmp_path):
    x, y, groups = long_tail()
    classes = sorted(y.unique())
    cfg = dict(CFG, candidates=5)
    model = Reranker.fit(x, y, groups, classes, {"num_threads": 1, "num_leaves": 7}, 30, cfg, seed=0)
    proba = model.predict_proba(x)
    assert proba.shape == (len(x), 40) and np.allclose(proba.sum(axis=1), 1)
    assert ((proba > 0).sum(axis=1) <= 5).all()  # classes outside the 5 candidates get nothing
    # balanced class weights: fewer rows right than by frequency, but more than the majority class gets
    assert (np.asarray(classes)[proba.argmax(axis=1)] == y).mean() > y.value_counts(normalize=True).iloc[0]
    assert 0.85 < model.candidate_recall(x, y.to_numpy()) <= 1
    model.save(tmp_path / "m.txt")
    assert (tmp_path / "m.txt").read_text().startswith("tree")  # LightGBM's text format, no pickle
    loaded = Reranker.load(tmp_path / "m.txt")
    assert loaded.classes == classes and set(loaded.proposers) == {"all", "a", "b"}
    np.testing.assert_array_equal(loaded.predict_proba(x), proba)
    # a class seen once (one camera) is still a class the model can propose and score
    rare = y.value_counts().index[-1]
    assert (y == rare).sum() <= 2 and rare in loaded.classes


def test_tuning_subsample_takes_whole_locations_and_is_seeded():
    groups = np.repeat(np.arange(20), 50)
    rows = tuning_rows(groups, 300, seed=1)
    assert 300 <= rows.sum() < 350 and rows.sum() % 50 == 0  # whole locations, just past the target
    assert (tuning_rows(groups, 300, seed=1) == rows).all() and (tuning_rows(groups, 300, seed=2) != rows).any()
    assert tuning_rows(groups, None, seed=1).all() and tuning_rows(groups, 5000, seed=1).all()


def test_the_tuning_objective_is_the_log_loss_of_the_reranked_probabilities():
    """The first fold's best loss, recomputed from the fold's model outside LightGBM."""
    x, y, groups = toy()
    data = tuning_data(x, y, groups, CFG, 3)
    loss, _ = cross_validate(data, {"num_threads": 1, "verbose": -1, "num_leaves": 7}, dict(CFG, cv_folds=3), 0)
    assert 0 < loss < np.log(3)  # better than uniform over the three classes


def test_an_edit_to_the_tuning_code_starts_a_new_study(tmp_path, monkeypatch):
    """Trials scored by other code (other pair features, another objective) are not this study's."""
    import models.tune
    x, y, groups = toy()
    cfg = dict(CFG, tune=dict(CFG["tune"], storage=f"sqlite:///{tmp_path}/s.db"))
    _, _, first = tune(x, y, groups, cfg, 3, seed=0)
    monkeypatch.setattr(models.tune, "code_digest", lambda module: "edited")
    _, _, edited = tune(x, y, groups, cfg, 3, seed=0)
    assert edited.study_name != first.study_name and len(edited.trials) == 2


def test_candidate_log_loss_is_the_weighted_log_loss_of_scores_renormalised_over_candidates():
    """Two rows of k = 3 candidates. Row 1: scores (0.2, 0.6, 0.2), its class second -> p = 0.6 / 1.0;
    row 2: scores (0.5, 0.25, 0.25), its class not a candidate -> p floored at 1e-15. Weights 3 and 1."""
    import lightgbm as lgb
    from models.tune import candidate_log_loss
    preds = np.array([0.2, 0.6, 0.2, 0.5, 0.25, 0.25])
    truth = np.array([0, 1, 0, 0, 0, 0])
    data = lgb.Dataset(np.zeros((6, 1)), label=truth, weight=np.repeat([3.0, 1.0], 3)).construct()
    name, value, higher_is_better = candidate_log_loss(3)(preds, data)
    expected = (3 * -np.log(0.6) + 1 * -np.log(1e-15)) / 4
    assert name == "candidate_log_loss" and not higher_is_better and value == pytest.approx(expected)
    unweighted = lgb.Dataset(np.zeros((6, 1)), label=truth).construct()
    assert candidate_log_loss(3)(preds, unweighted)[1] == pytest.approx((-np.log(0.6) - np.log(1e-15)) / 2)


def test_sequence_rows_round_trip_to_images():
    from models import sequence_rows
    seq = np.array(["b", "a", "b", "c", "a", "b"])
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 6.0, 5.0]}, index=[f"i{k}" for k in range(6)])
    labels = pd.Series([7, 9, 7, 8, 9, 5], index=features.index)
    rows = sequence_rows.to_rows(features, seq, "sequence")
    assert list(rows.index) == ["a", "b", "c"] and rows["x"].tolist() == [4.0, 3.0, 4.0]  # frame means
    assert sequence_rows.row_labels(labels, seq, "sequence").tolist() == [9, 7, 8]  # the frames' commonest
    groups = sequence_rows.row_groups(pd.Series(list("LLLMLL"), index=features.index), seq, "sequence")
    assert groups.tolist() == ["L", "L", "M"]
    proba = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])  # one row per sequence, in rows' order
    per_image = sequence_rows.to_images(proba, rows.index, seq, "sequence")
    np.testing.assert_array_equal(per_image, proba[[1, 0, 1, 2, 0, 1]])  # each frame gets its sequence's row
    assert sequence_rows.to_rows(features, seq, "image") is features
    assert sequence_rows.to_images(proba, rows.index, seq, "image") is proba
    with pytest.raises(ValueError, match="train.rows must be 'image' or 'sequence'"):
        sequence_rows.to_rows(features, seq, "burst")


def test_confusion_plot_keeps_the_most_frequent_classes_and_folds_the_rest(tmp_path):
    """iWildCam has 188 classes: the plot names the 15 most frequent held-out classes and counts every other
    one as `other`, each image once."""
    import json

    import lightgbm as lgb
    from models.report_plots import TOP_CLASSES, write_plots
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(20), np.arange(40, 0, -2))  # class 0 most frequent, 19 least
    y_pred = np.where(rng.random(len(y_true)) < 0.7, y_true, rng.integers(0, 20, len(y_true)))
    names = pd.Series({c: f"species {c}" for c in range(20)})
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 3},
                        lgb.Dataset(pd.DataFrame({"a__x": rng.random(50), "b__y": rng.random(50)}),
                                    label=rng.integers(0, 2, 50)), num_boost_round=3)
    per_class = {c: {"precision": 1.0, "recall": 1.0, "support": 1} for c in range(20)}
    write_plots(y_true, y_pred, per_class, booster, names, tmp_path / "plots", tmp_path / "figures")
    confusion = pd.read_csv(tmp_path / "plots/confusion.csv")
    assert len(confusion) == len(y_true)
    assert set(confusion["actual"]) == {f"{c} species {c}" for c in range(TOP_CLASSES)} | {"other"}
    folded = y_true >= TOP_CLASSES
    assert (confusion["actual"] == "other").to_numpy().tolist() == folded.tolist()
    assert (confusion["predicted"] == "other").to_numpy().tolist() == (y_pred >= TOP_CLASSES).tolist()
    assert len(json.loads((tmp_path / "plots/per_class_recall.json").read_text())) == 20
    assert (tmp_path / "figures/confusion.png").read_bytes()[:4] == b"\x89PNG"
