"""Splits, tuning, model files, baselines and metrics on small hand-built cases."""
import json

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import f1_score, recall_score
from sklearn.utils.class_weight import compute_sample_weight

from models import baselines, registry
from models.bootstrap import counts, location_intervals, location_weights, replicate_scores
from models.lgbm import LightGBMMulticlass, fit_params, log_loss_of_true_class, stopping_rows
from models.metrics import classification_metrics, smooth_by_sequence
from models.report_plots import write_interval_plots
from models.rerank import LOG_FLOOR, Proposer, Reranker, candidates, out_of_fold, proposer_columns
from data.quality import DataError
from models.split import NotFittable, evaluation_split, holdout_locations, location_folds
from models.tune import chosen_trial, cross_validate, tune, tuning_folds, tuning_rows
from tests.helpers import SPACE, TRAIN, TUNE, reranker, toy

def tuned(x, y, groups, storage=None, space=SPACE, model=None, **tune_settings):
    """tune() with the test's settings: (the chosen trial's params, the study)."""
    result = tune(model or reranker(), x, y, groups, space, dict(TUNE, storage=storage, **tune_settings), seed=0)
    return result.params, result.study


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


def test_multiclass_model_files_reload_and_predict_identically(tmp_path):
    x, y, groups = toy()
    labels = np.array([0, 24, 374])[y]
    model = registry.build("lightgbm_multiclass", TRAIN, {"num_leaves": 7}, threads=1).fit(x, labels, groups)
    assert model.classes_.tolist() == [0, 24, 374]
    # the refit runs the best round of LightGBM's own early stopping on the last location fold (bins from all
    # rows), scaled by all rows / fitted rows
    stop = stopping_rows(groups, TRAIN["cv_folds"])
    params = fit_params(model, objective="multiclass", num_class=3)
    binned = lgb.Dataset(x, y, weight=compute_sample_weight("balanced", y), params=params).construct()
    stopped = lgb.train(params, binned.subset(np.flatnonzero(~stop)), TRAIN["max_rounds"],
                        valid_sets=[binned.subset(np.flatnonzero(stop))],
                        callbacks=[lgb.early_stopping(TRAIN["early_stopping_rounds"], verbose=False)])
    assert model.rounds_ == round(stopped.best_iteration * len(y) / (~stop).sum()) and model.rounds_ > 1
    assert model.booster_.num_trees() == 3 * model.rounds_
    model.save(tmp_path / "m")
    assert (tmp_path / "m/booster.txt").read_text().startswith("tree")  # LightGBM's text format, no pickle
    loaded = registry.load(tmp_path / "m")
    assert isinstance(loaded, LightGBMMulticlass) and loaded.classes_.tolist() == [0, 24, 374]
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert (loaded.classes_[loaded.predict_proba(x).argmax(axis=1)] == labels).mean() > 0.8


@pytest.mark.parametrize("name", ["lightgbm_multiclass", "reranker"])
def test_the_tuned_models_keep_scikit_learns_contract_through_save_and_load(tmp_path, name):
    """predict and score (accuracy) work, a loaded model's get_params are those it was fitted with (the thread
    count aside), and metadata routing hands the location groups to fit once requested."""
    from sklearn import config_context
    from sklearn.utils.metadata_routing import get_routing_for_object
    x, y, groups = toy()
    model = registry.build(name, dict(TRAIN, seed=5, max_rounds=60), {"num_leaves": 7}, threads=1)
    with config_context(enable_metadata_routing=True):
        assert not get_routing_for_object(model).consumes("fit", ["groups"])
        assert get_routing_for_object(model.set_fit_request(groups=True)).consumes("fit", ["groups"]) == {"groups"}
    model.fit(x, y, groups=groups)
    predicted = model.predict(x)
    np.testing.assert_array_equal(predicted, model.classes_[model.predict_proba(x).argmax(axis=1)])
    assert model.score(x, y) == (predicted == y).mean()
    model.save(tmp_path / "m")
    loaded = registry.load(tmp_path / "m")
    fitted_with = {k: v for k, v in model.get_params().items() if k != "num_threads"}
    assert {k: v for k, v in loaded.get_params().items() if k != "num_threads"} == fitted_with
    assert loaded.get_params()["seed"] == 5 and loaded.get_params()["max_rounds"] == 60
    np.testing.assert_array_equal(loaded.predict(x), predicted)


def test_the_chosen_trial_has_the_fewest_rounds_within_one_standard_error_of_the_lowest_loss():
    def trial(fold_losses, rounds, state=optuna.trial.TrialState.COMPLETE):
        return optuna.trial.create_trial(
            state=state, value=float(np.mean(fold_losses)) if state == optuna.trial.TrialState.COMPLETE else None,
            params={"learning_rate": 0.1}, distributions={"learning_rate": optuna.distributions.FloatDistribution(0.01, 1)},
            user_attrs={"fold_losses": fold_losses, "rounds": rounds})
    trials = [trial([1.0, 2.0, 3.0], [300, 300, 300]),        # the lowest loss
              trial([1.05, 1.95, 3.1], [100, 120, 110]),      # +0.033, one SE 0.044: within, 110 rounds
              trial([1.2, 2.2, 3.2], [20, 20, 20]),           # +0.2 on every fold (SE 0): out, however few rounds
              trial([1.0, 2.01, 2.995], [200, 200, 200]),     # within, more rounds than trial 1
              trial([1.0, 2.0, 3.0], [5, 5, 5], optuna.trial.TrialState.PRUNED)]
    for number, t in enumerate(trials):
        t.number = number
    chosen, why = chosen_trial(trials, "fewest_rounds_within_one_se")
    assert chosen.number == 1 and why.startswith("trial 1: the fewest boosting rounds (mean 110 over the folds, "
                                                 "against 300) of the 3 trials") and "trial 0's" in why
    assert chosen_trial(trials, "lowest_loss")[0].number == 0
    for t in trials:  # one validation fold (WILDS): no spread to weigh differences by, the lowest loss
        t.user_attrs["fold_losses"] = t.user_attrs["fold_losses"][:1]
    assert chosen_trial([trials[0], trials[1]], "fewest_rounds_within_one_se")[0].number == 0
    x, y, groups = toy()
    with pytest.raises(DataError, match="^params.yaml: train.tune.choice must be one of lowest_loss, "
                                        "fewest_rounds_within_one_se, not 'fastest'$"):
        tuned(x, y, groups, choice="fastest")


def test_study_resumes_to_its_trial_target(tmp_path):
    x, y, groups = toy()
    params, study = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db")
    assert len(study.trials) == 2 and params["verbose"] == -1 and set(SPACE) <= set(params)
    assert all(1 <= r <= 45 for t in study.trials for r in t.user_attrs["rounds"])
    _, resumed = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db", n_trials=3)
    assert resumed.study_name == study.study_name and len(resumed.trials) == 3
    threaded = registry.build("reranker", TRAIN, threads=2)  # an execution setting: the same study
    _, same = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db", model=threaded, n_trials=3)
    assert same.study_name == study.study_name and len(same.trials) == 3


def test_pruning_stops_a_trial_from_lightgbm_iterations():
    x, y, groups = toy()
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss prunes
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="iteration 0"):
        cross_validate(reranker(), tuning_folds(reranker(), x, y, groups, 3), trial)


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


def test_wilds_metrics_average_over_the_classes_present_only():
    """WILDS's eval: macro recall and macro-F1 over the labels in y_true (sklearn with labels=unique(y_true)); a
    prediction of a class absent from y_true costs its true class's recall and adds no class of its own."""
    classes = [0, 1, 2, 3]
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 3, 2])             # class 3 is predicted once and never true
    proba = np.eye(4)[y_pred]
    m = classification_metrics(y_true, proba, classes, np.array(["a", "b", "c", "d", "e"]))
    # by hand: class 0 P 1 R 1/2 F 2/3; class 1 P 1/2 R 1/2 F 1/2; class 2 P 1 R 1 F 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    present = np.unique(y_true)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro"))
    assert m["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, labels=present, average="macro"))
    # sklearn's default label set (every label seen in either array) would count class 3 with F1 0
    assert f1_score(y_true, y_pred, average="macro") == pytest.approx((2 / 3 + 1 / 2 + 1 + 0) / 4)


def test_sequence_smoothing_gives_every_frame_the_sequence_mean():
    proba = np.array([[.9, .1], [.2, .8], [.4, .6]])
    smoothed = smooth_by_sequence(proba, np.array(["a", "a", "b"]))
    np.testing.assert_allclose(smoothed, [[.55, .45], [.55, .45], [.4, .6]])


def test_detector_only_rule():
    y_fit = pd.Series([0, 0, 0, 24, 24, 7])
    top = pd.Series([0.9, 0.2, np.nan, 0.5])
    rule = baselines.DetectorRule(0.5).fit(top.to_frame("top_conf").iloc[:0], y_fit)
    proba = rule.predict_proba(top.to_frame("top_conf"))
    assert rule.classes_.tolist() == [0, 7, 24] and rule.classes_[proba.argmax(axis=1)].tolist() == [24, 0, 0, 24]
    assert baselines.majority_class().fit(np.zeros((6, 1)), y_fit).predict(np.zeros((2, 1))).tolist() == [0, 0]


def test_detector_only_rule_without_any_empty_training_image():
    """Many projects drop empties before labelling: the rule still says "empty" below the threshold."""
    y_fit = pd.Series([24, 24, 7])
    top = pd.Series([0.9, 0.2])
    rule = baselines.DetectorRule(0.5).fit(None, y_fit)
    proba = rule.predict_proba(top.to_frame("top_conf"))
    classes = rule.classes_.tolist()
    assert classes == [0, 7, 24] and np.asarray(classes)[proba.argmax(axis=1)].tolist() == [24, 0]
    m = classification_metrics(np.array([24, 7]), proba, classes, np.array(["a", "b"]))
    assert m["accuracy"] == 0.5


def test_hist_gradient_boosting_baseline_ignores_columns_empty_in_training():
    x, y, groups = toy()
    x["never_seen"] = np.nan  # e.g. a Landsat quarter without a clear scene at any training camera
    x["seen_at_stopping_cameras_only"] = np.where(stopping_rows(groups, 3), 1.0, np.nan)
    model = baselines.HistGradientBoosting({"num_leaves": 7}, "none", max_rounds=40, early_stopping_rounds=5)
    proba = model.fit(x, y, groups).predict_proba(x)
    assert proba.shape == (len(x), 3) and model.classes_.tolist() == [0, 1, 2]
    assert model.model_.n_iter_ == model.rounds_ and list(model.model_.feature_names_in_) == ["a", "b", "noise"]


def test_a_value_only_change_to_the_training_data_starts_a_new_study(tmp_path):
    """Same columns and rows, other values (e.g. a new crop margin): the old study's best params and loss
    say nothing about these features, so its trials must not be reused."""
    x, y, groups = toy()
    storage = f"sqlite:///{tmp_path}/s.db"
    _, first = tuned(x, y, groups, storage)
    _, again = tuned(x, y, groups, storage)
    assert again.study_name == first.study_name and len(again.trials) == 2  # nothing new to run
    shifted = x.assign(a=x["a"] + np.random.default_rng(5).normal(0, 0.5, len(x)))
    _, changed = tuned(shifted, y, groups, storage)
    assert changed.study_name != first.study_name and len(changed.trials) == 2
    assert changed.best_value != first.best_value
    relabelled, regrouped = y.copy(), groups.copy()
    relabelled[:5] = (relabelled[:5] + 1) % 3
    regrouped[:5] = (regrouped[:5] + 1) % 12
    names = {tuned(x, relabelled, groups, storage)[1].study_name, tuned(x, y, regrouped, storage)[1].study_name,
             tuned(x, y, groups, storage, model=reranker(candidates=3))[1].study_name,
             tuned(x, y, groups, storage, model=registry.build("lightgbm_multiclass", TRAIN))[1].study_name}
    assert len(names | {first.study_name}) == 5


def test_the_key_order_of_the_search_space_changes_neither_the_study_nor_its_trials():
    """params.yaml rewritten with sorted keys (as yaml.safe_dump does) is the same experiment."""
    x, y, groups = toy()
    _, first = tuned(x, y, groups)
    _, second = tuned(x, y, groups, space=dict(reversed(list(SPACE.items()))))
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
    model = reranker({"num_leaves": 7}, candidates=5).fit(x, y, groups)
    assert model.classes_.tolist() == classes and model.booster_.num_trees() == model.rounds_  # binary: a tree a round
    proba = model.predict_proba(x)
    assert proba.shape == (len(x), 40) and np.allclose(proba.sum(axis=1), 1)
    assert ((proba > 0).sum(axis=1) <= 5).all()  # classes outside the 5 candidates get nothing
    # balanced class weights: fewer rows right than by frequency, but more than the majority class gets
    assert (np.asarray(classes)[proba.argmax(axis=1)] == y).mean() > y.value_counts(normalize=True).iloc[0]
    assert 0.85 < model.candidate_recall(x, y.to_numpy()) <= 1
    model.save(tmp_path / "m")
    assert (tmp_path / "m/booster.txt").read_text().startswith("tree")  # LightGBM's text format, no pickle
    loaded = registry.load(tmp_path / "m")
    assert isinstance(loaded, Reranker) and loaded.classes_.tolist() == classes
    assert set(loaded.evidence_.proposers) == {"all", "a", "b"}
    np.testing.assert_array_equal(loaded.predict_proba(x), proba)
    # a class seen once (one camera) is still a class the model can propose and score
    rare = y.value_counts().index[-1]
    assert (y == rare).sum() <= 2 and rare in loaded.classes_


def test_tuning_subsample_takes_whole_locations_and_is_seeded():
    groups = np.repeat(np.arange(20), 50)
    rows = tuning_rows(groups, 300, seed=1)
    assert 300 <= rows.sum() < 350 and rows.sum() % 50 == 0  # whole locations, just past the target
    assert (tuning_rows(groups, 300, seed=1) == rows).all() and (tuning_rows(groups, 300, seed=2) != rows).any()
    assert tuning_rows(groups, None, seed=1).all() and tuning_rows(groups, 5000, seed=1).all()


@pytest.mark.parametrize("name", ["reranker", "lightgbm_multiclass"])
def test_a_tuning_fold_is_scored_on_the_model_that_fit_builds_from_the_other_folds_alone(name):
    """Nested: each fold's score is the log-loss of exactly the model `fit` makes from the other folds' rows
    (its evidence, early stopping and refit all inside them), so the same object serves tuning and training."""
    x, y, groups = toy()
    model = registry.build(name, TRAIN, {"verbose": -1, "num_leaves": 7}, threads=1)
    losses, rounds = cross_validate(model, tuning_folds(model, x, y, groups, 3))
    by_hand = []
    for fit, val in location_folds(groups, 3):
        fitted = registry.build(name, TRAIN, {"verbose": -1, "num_leaves": 7}, threads=1).fit(
            x.iloc[fit], y[fit], groups[fit])
        by_hand.append(log_loss_of_true_class(fitted.predict_proba(x.iloc[val]), fitted.classes_, y[val], "balanced"))
    assert losses == pytest.approx(by_hand) and 0 < np.mean(losses) < np.log(3)  # better than uniform
    assert all(1 <= r <= 45 for r in rounds)


def test_a_tuning_fold_model_never_sees_that_fold_s_labels():
    x, y, groups = toy()
    folds = tuning_folds(reranker(), x, y, groups, 3)
    relabelled = y.copy()
    _, val = location_folds(groups, 3)[0]
    relabelled[val] = (relabelled[val] + 1) % 3
    again = tuning_folds(reranker(), x, relabelled, groups, 3)
    np.testing.assert_array_equal(again[0].prepared.evidence, folds[0].prepared.evidence)
    assert not np.array_equal(again[1].prepared.evidence, folds[1].prepared.evidence)


def test_out_of_fold_evidence_never_uses_a_row_s_own_fold():
    """Relabelling one fold's rows leaves that fold's evidence as it was and changes the other folds'."""
    x, y, groups = long_tail()
    codes = (y - 100).to_numpy()
    x, columns = x.to_numpy(np.float32), proposer_columns(list(x.columns))
    cand, evidence = out_of_fold(x, codes, groups, columns, 3, 40, True, 5)
    folds = location_folds(groups, 3)
    for k, (_, val) in enumerate(folds):
        relabelled = codes.copy()
        relabelled[val] = (relabelled[val] + 7) % 40
        c, e = out_of_fold(x, relabelled, groups, columns, 3, 40, True, 5)
        np.testing.assert_array_equal(c[val], cand[val])
        np.testing.assert_array_equal(e[val], evidence[val])
        others = np.setdiff1d(np.arange(len(codes)), val)
        assert not np.array_equal(e[others], evidence[others])


def test_location_folds_of_few_locations_use_what_there_is():
    """A nested fold of a small dataset can hold fewer cameras than folds: one fold per camera, and the rows
    of a lone camera split among themselves rather than a crash."""
    two = location_folds(np.repeat([5, 9], 10), 3)
    assert len(two) == 2 and all(len(set(np.repeat([5, 9], 10)[val])) == 1 for _, val in two)
    one = location_folds(np.full(9, 4), 3)
    assert len(one) == 3 and sorted(np.concatenate([val for _, val in one])) == list(range(9))


def test_early_stopping_holds_out_the_last_location_fold():
    groups = np.random.default_rng(1).integers(0, 12, 300)
    stop = stopping_rows(groups, 3)
    np.testing.assert_array_equal(np.flatnonzero(stop), np.sort(location_folds(groups, 3)[-1][1]))
    assert set(groups[stop]).isdisjoint(groups[~stop])


def test_an_edit_to_the_tuning_code_starts_a_new_study(tmp_path, monkeypatch):
    """Trials scored by other code (other pair features, another objective) are not this study's."""
    import models.tune
    x, y, groups = toy()
    _, first = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db")
    monkeypatch.setattr(models.tune, "code_digest", lambda module: "edited")
    _, edited = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db")
    assert edited.study_name != first.study_name and len(edited.trials) == 2


def test_an_edit_to_the_model_s_own_code_starts_a_new_study(tmp_path, monkeypatch):
    """A trial is a fit of the model's module (models/rerank.py), which models/tune.py does not import: an edit
    there once reused the trials the old code had scored."""
    import models.tune
    x, y, groups = toy()
    _, first = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db")
    digest = models.tune.code_digest
    monkeypatch.setattr(models.tune, "code_digest",
                        lambda module: "edited" if str(module).endswith("rerank.py") else digest(module))
    _, edited = tuned(x, y, groups, f"sqlite:///{tmp_path}/s.db")
    assert edited.study_name != first.study_name and len(edited.trials) == 2


def test_candidate_log_loss_is_the_weighted_log_loss_of_scores_renormalised_over_candidates():
    """Two rows of k = 3 candidates. Row 1: scores (0.2, 0.6, 0.2), its class second -> p = 0.6 / 1.0;
    row 2: scores (0.5, 0.25, 0.25), its class not a candidate -> p floored at 1e-15. Weights 3 and 1."""
    import lightgbm as lgb
    from models.rerank import candidate_log_loss
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
    rows_table = pd.DataFrame({"location": pd.array([3, 3, 3, pd.NA, 3, 3], "Int64"),
                               "photo": [False, False, False, True, False, False]}, index=features.index)
    meta = sequence_rows.row_metadata(rows_table, seq, "sequence")
    np.testing.assert_array_equal(meta["groups"], [3.0, 3.0, np.nan])  # a photo has no location
    assert meta["supplemental"].tolist() == [False, False, True]
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
    write_plots(y_true, y_pred, per_class, booster, names, "holdout", tmp_path / "plots", tmp_path / "figures")
    confusion = pd.read_csv(tmp_path / "plots/confusion.csv")
    assert len(confusion) == len(y_true)
    assert set(confusion["actual"]) == {f"{c} species {c}" for c in range(TOP_CLASSES)} | {"other"}
    folded = y_true >= TOP_CLASSES
    assert (confusion["actual"] == "other").to_numpy().tolist() == folded.tolist()
    assert (confusion["predicted"] == "other").to_numpy().tolist() == (y_pred >= TOP_CLASSES).tolist()
    assert len(json.loads((tmp_path / "plots/per_class_recall.json").read_text())) == 20
    assert (tmp_path / "figures/confusion.png").read_bytes()[:4] == b"\x89PNG"


def camera_long_tail(n=3000, n_classes=30, n_locations=40, seed=0):
    """Classes living at a few cameras each (as species do), frequencies long-tailed, two feature families."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_locations, n)
    freq = 1 / np.arange(1, n_classes + 1)
    present = rng.random((n_locations, n_classes)) < np.linspace(0.9, 0.1, n_classes)  # common classes widespread
    present[:, 0] = True
    weights = present[groups] * freq
    y = np.array([rng.choice(n_classes, p=w / w.sum()) for w in weights])
    centres = rng.normal(0, 1.0, (n_classes, 6))
    x = pd.DataFrame(centres[y] + rng.normal(0, 1.5, (n, 6)), columns=[f"a__{i}" for i in range(3)] +
                     [f"b__{i}" for i in range(3)])
    return x, y, groups


def test_candidate_evidence_of_training_pairs_is_distributed_as_when_serving():
    """Train/serve skew: each evidence column of the training pairs (out of fold) and of unseen cameras' rows
    at serving time (class evidence fitted on all training rows) must agree in distribution: two-sample
    Kolmogorov-Smirnov statistic below 0.15 per column. A class's count of training cameras fails this
    (about 1.5x larger when serving with 3 folds); its share of them does not."""
    from scipy.stats import ks_2samp
    x, y, groups = camera_long_tail()
    held = np.isin(groups, np.arange(10))
    model = reranker({"num_leaves": 7, "verbose": -1}, candidates=5)
    data = model.prepare(x[~held], y[~held], groups[~held])
    fitted = model.fit_prepared(data)
    _, _, serving = fitted.serving_pairs(x[held])
    names = fitted.evidence_.names()
    train_pairs, serve_pairs = data.evidence.reshape(-1, len(names)), serving.reshape(-1, len(names))
    for j, name in enumerate(names):
        statistic = ks_2samp(train_pairs[:, j], serve_pairs[:, j]).statistic
        assert statistic < 0.15, f"{name}: KS {statistic:.3f}"
    share = names.index("candidate__class_location_share")
    n_fit, n_fold_fit = len(np.unique(groups[~held])), len(np.unique(groups[~held])) * 2 / 3
    counts_train, counts_serve = train_pairs[:, share] * n_fold_fit, serve_pairs[:, share] * n_fit
    assert ks_2samp(counts_train, counts_serve).statistic > 0.3  # what a count would have been


def test_the_reranker_is_chosen_only_when_its_tuning_folds_say_so_beyond_noise():
    rr, mc = registry.Reranker.NAME, registry.LightGBMMulticlass.NAME
    clearly = {rr: {"fold_losses": [0.50, 0.52, 0.48]}, mc: {"fold_losses": [0.60, 0.61, 0.62]}}
    assert registry.choose(clearly, "location")[0] == rr
    # lower on average (-0.01) but by less than one standard error of the paired differences: the multiclass
    tied = {rr: {"fold_losses": [0.50, 0.70, 0.48]}, mc: {"fold_losses": [0.60, 0.61, 0.50]}}
    chosen, why = registry.choose(tied, "location")
    assert chosen == mc and "-0.0100, not lower by more than one standard error" in why
    assert registry.choose({rr: {"fold_losses": [9.0, 9.0]}}, "location")[0] == rr  # the multiclass over the cap
    # the WILDS scheme's one validation split: the lower loss there, however small the difference
    assert registry.choose({rr: {"fold_losses": [0.50]}, mc: {"fold_losses": [0.51]}}, "wilds")[0] == rr
    chosen, why = registry.choose({rr: {"fold_losses": [0.51]}, mc: {"fold_losses": [0.50]}}, "wilds")
    assert chosen == mc and why.endswith("+0.0100 on the one validation split")
    assert registry.tuned_names(1000, 188, 2_000_000) == ([rr, mc], None)
    assert registry.tuned_names(20_000, 188, 2_000_000) == ([rr], "skipped: 20,000 rows x 188 classes = 3,760,000 > "
                                                                 "train.multiclass_max_row_classes (2,000,000)")


def test_thin_rows_skip_a_model_with_the_reason_instead_of_a_traceback():
    """Classes at one camera each (as most real classes): the stopping fold holds no class the other folds know,
    which scikit-learn's early stopping cannot use; a fit of one class has nothing to tell apart."""
    x, _, _ = toy(90)
    groups = np.repeat([0, 1, 2], 30)
    y = groups * 10  # each location its own class
    with pytest.raises(NotFittable, match="its early-stopping fold .* has no image of a class the other folds"):
        baselines.HistGradientBoosting(max_rounds=10).fit(x, y, groups=groups)
    for model in (reranker(), LightGBMMulticlass(max_rounds=10)):
        with pytest.raises(NotFittable, match="the 90 rows it fits on hold 1 class"):
            model.fit(x, np.full(90, 4), groups)
    with pytest.raises(NotFittable, match=r"^1 camera-trap row\(s\): nothing to fit and validate on$"):
        location_folds(np.array([3]), 3)
    with pytest.raises(NotFittable, match=r"^1 camera-trap row\(s\)"):  # photos alone validate nothing
        location_folds(np.array([3, np.nan, np.nan]), 3, np.array([False, True, True]))
    assert len(location_folds(groups, 3)) == 3
    with pytest.raises(NotFittable, match=r"^no row's class is among its 2 out-of-fold candidates \(each class's rows "
                                          r"are in one location fold"):  # nothing a booster could learn from
        reranker().fit(x, y, groups)


def test_out_of_fold_candidates_are_classes_the_fold_saw_and_serving_proposes_as_many():
    """Issue 38: classes at one or two cameras, fewer in a fold's other rows than `candidates`. Candidates once
    padded with classes the fold never saw: the right class of a row whose camera alone has it was always among
    them, and the booster learnt that a class nobody saw is right (accuracy 0.000 on a built case)."""
    rng = np.random.default_rng(3)
    y = np.r_[np.arange(10), np.arange(6)].repeat(20)
    groups = np.r_[np.arange(10), np.arange(6) + 10].repeat(20)  # classes 0-5 at two cameras, 6-9 at one each
    x = pd.DataFrame({"a": y + rng.normal(0, 0.3, len(y)), "b": rng.normal(0, 1, len(y))})
    model = reranker({"num_leaves": 7}, candidates=10)
    data = model.prepare(x, y, groups)
    k = data.cand.shape[1]
    folds = location_folds(groups, 3)
    assert k == min(len(np.unique(y[fit])) for fit, _ in folds) < 10
    for fit, val in folds:  # every candidate a class the fold's proposers were fitted on
        assert np.isin(data.cand[val], y[fit]).all()
    assert model.fit_prepared(data).candidates_ == k and ((model.predict_proba(x) > 0).sum(axis=1) == k).all()
    _, cand, _ = model.serving_pairs(x)
    assert cand.shape[1] == k


def official(splits: dict[str, int], usable: bool = True) -> pd.DataFrame:
    """Labelled rows of a WILDS-layout copy: `splits` gives each official split's image count."""
    split = np.concatenate([[s] * n for s, n in splits.items()])
    return pd.DataFrame({"wilds_split": split, "location": np.arange(len(split)) % 4, "usable": usable,
                         "photo": False})


def test_wilds_splits_the_scheme_needs_are_refused_by_name_and_others_left_unscored():
    split = evaluation_split(official({"train": 8, "val": 2, "test": 3, "id_test": 2}), "wilds", None)
    assert list(split.scored) == ["test", "val", "id_test"]
    assert split.unscored == {"id_val": "no labelled image in this split of metadata.csv"}
    for missing in ("train", "val", "test"):
        with pytest.raises(DataError, match=rf"^metadata.csv: no labelled image in split '{missing}', which split"
                                            r".scheme wilds (fits on|tunes on|reports): use split.scheme location"):
            evaluation_split(official({s: 3 for s in ("train", "val", "test") if s != missing}), "wilds", None)
    with pytest.raises(DataError, match="holds out whole cameras, but the labelled train images come from 1 location"):
        holdout_locations(pd.Series([5, 5, 5]), 0.25, 0)


def test_rows_without_usable_pixels_never_train_and_are_scored_all_the_same():
    rows = official({"train": 8, "val": 2, "test": 3})
    rows.loc[[0, 1, 9, 10], "usable"] = False  # two training images, one val and one test image
    split = evaluation_split(rows, "wilds", None)
    assert split.fit.tolist() == split.final.tolist() == [False, False] + [True] * 6 + [False] * 5
    assert split.without_pixels == 2 and split.tuning[9] and split.scored["test"][10]
    rows = rows.assign(location=[0, 1, 2, 3] * 3 + [0], usable=[False, True] * 6 + [True])
    split = evaluation_split(rows.drop(columns="wilds_split"), "location", [3])
    assert not (split.fit & ~rows["usable"]).any() and split.scored["holdout"].sum() == 3
    with pytest.raises(DataError, match="no labelled training image has usable pixels"):
        evaluation_split(rows.assign(usable=False), "location", [3])


def test_the_one_family_tuned_is_chosen_with_the_reason():
    chosen, why = registry.choose({"lightgbm_multiclass": {"fold_losses": [0.5, 0.6]}}, "location")
    assert chosen == "lightgbm_multiclass" and why.startswith("the only model tuned")


def test_a_study_short_of_its_trials_at_the_timeout_chooses_nothing_and_resumes(tmp_path):
    """The timeout ends a slow run with an error, never with fewer trials deciding the params; the rerun
    resumes the stored study and chooses what a run without the timeout would have chosen."""
    x, y, groups = toy()
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(DataError, match=r"^train: study reranker-\w+ finished 0 of its 3 trials within "
                                        r"execution.tune_timeout_s \(1e-09 s\): rerun to resume it"):
        tuned(x, y, groups, storage, n_trials=3, timeout_s=1e-9)
    resumed, study = tuned(x, y, groups, storage, n_trials=3)
    assert len(study.trials) == 3
    uninterrupted, _ = tuned(x, y, groups, f"sqlite:///{tmp_path / 'other.db'}", n_trials=3)
    assert resumed == uninterrupted


def test_location_bootstrap_resamples_whole_cameras_and_scores_as_wilds_does():
    """Each replicate equals scikit-learn on the images of the locations it drew (macro-F1 over the labels present
    in that replicate); a paired difference is computed on the same replicates, so a model against itself is 0."""
    rng = np.random.default_rng(3)
    n = 600
    locations = rng.integers(0, 9, n)
    y = np.where(locations < 3, 4, rng.choice([1, 2, 7], n))  # class 4 lives at three cameras only
    good, bad = np.where(rng.random(n) < 0.8, y, 2), np.where(rng.random(n) < 0.4, y, 7)
    codes, weights = location_weights(locations, 50, seed=0)
    table = counts(y, good, codes, weights.shape[1], pd.Index([1, 2, 4, 7]))
    scores = replicate_scores(table, weights)
    for r in range(50):
        rows = np.concatenate([np.flatnonzero(codes == c) for c in np.repeat(np.arange(9), weights[r].astype(int))])
        assert scores["accuracy"][r] == pytest.approx(np.mean(good[rows] == y[rows]))
        assert scores["macro_f1"][r] == pytest.approx(f1_score(y[rows], good[rows], labels=np.unique(y[rows]),
                                                               average="macro", zero_division=0))
    found = location_intervals(y, {"good": good, "bad": bad, "same": good}, locations, "good", 1000, seed=0)
    low, high = found["good"]["macro_f1_ci"]
    assert low < f1_score(y, good, labels=np.unique(y), average="macro") < high
    assert found["same"]["vs_chosen"]["macro_f1"] == {"difference": 0.0, "ci": [0.0, 0.0]}
    versus = found["bad"]["vs_chosen"]["accuracy"]
    assert versus["difference"] == pytest.approx(np.mean(good == y) - np.mean(bad == y)) and versus["ci"][0] > 0
    assert "vs_chosen" not in found["good"]
    assert location_intervals(y, {"good": good}, locations, "good", 1000, seed=0) == {"good": found["good"]}


def test_interval_plot_draws_intervals_that_exclude_their_own_value(tmp_path):
    """A percentile-bootstrap interval of macro-F1 can lie wholly below the split's own value (duplicated cameras
    change the labels present): drawn as a line between its ends, never as +- errors, which cannot be negative."""
    summary = {"chosen": {"splits": {"test": {"accuracy": 0.9, "macro_f1": 0.85, "accuracy_ci": [0.8, 0.95],
                                                "macro_f1_ci": [0.6, 0.8]}}},
               "baseline": {"splits": {"test": {"accuracy": 0.4, "macro_f1": 0.1, "accuracy_ci": [0.3, 0.5],
                                                  "macro_f1_ci": [0.05, 0.15]}}},
               "not_fitted": {"skipped": "skipped: one class"}}
    write_interval_plots(summary, "test", "chosen", tmp_path, tmp_path)
    rows = json.loads((tmp_path / "intervals.json").read_text())
    assert [r["model"] for r in rows] == ["baseline", "chosen"] and rows[1]["macro_f1_high"] == 0.8
    assert (tmp_path / "intervals.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("model", [reranker(), LightGBMMulticlass(max_rounds=10, num_threads=1),
                                   baselines.HistGradientBoosting(max_rounds=10)], ids=lambda m: type(m).__name__)
def test_groups_and_the_photo_mask_are_fit_metadata_with_scikit_learn_s_defaults(model, caplog):
    """As scikit-learn's grouped estimators take them: without `groups` the rows are one location (split by KFold,
    with a warning), so the models run under scikit-learn's own cross-validation; with metadata routing on,
    `groups` and `supplemental` reach `fit` through it."""
    from sklearn import config_context
    from sklearn.model_selection import GroupKFold, cross_val_score, cross_validate as sk_cross_validate
    x, y, groups = toy()
    with caplog.at_level("WARNING"):
        fitted = clone(model).fit(x, y)
    assert "only one location" in caplog.text and fitted.predict_proba(x).shape == (len(y), 3)
    scores = cross_val_score(clone(model), x, y, groups=groups, cv=GroupKFold(3))
    assert len(scores) == 3 and (scores > 0.5).all()
    photo = np.zeros(len(y), bool)
    with config_context(enable_metadata_routing=True):
        routed = clone(model).set_fit_request(groups=True, supplemental=True)
        result = sk_cross_validate(routed, x, y, cv=GroupKFold(3), params={"groups": groups, "supplemental": photo})
    assert len(result["test_score"]) == 3
