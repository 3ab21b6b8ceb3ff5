"""Calibration (models/calibration.py): the temperature, the expected calibration error and its location
intervals, the out-of-fold fit and the served probabilities."""
import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from models.calibration import (Temperature, calibrate, ece_with_interval, expected_calibration_error, reliability,
                                scored_calibration, top_label)
from models.lgbm import LightGBMMulticlass
from models.tune import tuning_folds
from tests.helpers import toy


def overconfident(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities softmax(z) of labels drawn from softmax(z / temperature): a model too sure by that factor."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 6))
    truth = np.array([rng.choice(6, p=p) for p in softmax(z / temperature, axis=1)])
    return softmax(z, axis=1), truth


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with_and_keeps_every_prediction():
    proba, truth = overconfident(20_000, 2.0)
    temperature, at_zero = Temperature.fit(proba, truth)
    assert abs(temperature.temperature - 2.0) < 0.1 and at_zero == 0
    served = temperature.apply(proba)
    assert np.allclose(served.sum(axis=1), 1) and (served.argmax(axis=1) == proba.argmax(axis=1)).all()
    conf, correct = top_label(proba, list(range(6)), truth)
    before = expected_calibration_error(conf, correct, 15)
    assert expected_calibration_error(served.max(axis=1), correct, 15) < before / 3


def test_a_class_at_zero_stays_at_zero_and_its_rows_are_left_out_of_the_fit_and_counted():
    """The re-ranker gives 0 outside a row's candidates: no temperature moves it, so a row whose class is there
    cannot inform the fit (its log-loss is infinite whatever T)."""
    proba, truth = overconfident(2_000, 1.5)
    proba[:100, 0] = 0
    proba /= proba.sum(axis=1, keepdims=True)
    truth[:100] = 0
    temperature, at_zero = Temperature.fit(proba, truth)
    assert at_zero == 100 and np.isfinite(temperature.temperature)
    assert (temperature.apply(proba)[:100, 0] == 0).all()


def test_expected_calibration_error_on_a_hand_built_case():
    conf = np.r_[np.full(10, 0.95), np.full(10, 0.55)]
    correct = np.r_[np.ones(9), np.zeros(1), np.ones(5), np.zeros(5)].astype(bool)
    # bin of 0.95: accuracy 0.9, |0.9 - 0.95| = 0.05; bin of 0.55: 0.5, 0.05; each half the rows
    assert expected_calibration_error(conf, correct, 10) == pytest.approx(0.05)
    assert reliability(conf, correct, 10) == [
        {"bin_low": 0.5, "rows": 10, "confidence": pytest.approx(0.55), "accuracy": 0.5},
        {"bin_low": 0.9, "rows": 10, "confidence": pytest.approx(0.95), "accuracy": 0.9}]
    # one location: every replicate is the whole split
    one = ece_with_interval(conf, correct, np.zeros(20), 10, 200, 0)
    assert one["ece"] == pytest.approx(0.05) and one["ece_ci"] == pytest.approx([0.05, 0.05])
    # two locations, one calibrated and one not: replicates range from one location's error to the other's
    two = ece_with_interval(conf, correct, np.r_[np.zeros(10), np.ones(10)], 10, 500, 0)
    assert two["ece_ci"][0] == pytest.approx(0.05) and two["ece_ci"][1] == pytest.approx(0.05)
    skewed = ece_with_interval(np.full(20, 0.95), np.r_[np.ones(10), np.zeros(10)].astype(bool),
                               np.r_[np.zeros(10), np.ones(10)], 10, 500, 0)
    assert skewed["ece"] == pytest.approx(0.45) and skewed["ece_ci"] == pytest.approx([0.05, 0.95])


def test_calibration_is_fitted_on_the_tuning_folds_out_of_fold_rows_and_auto_applies_it_only_where_it_helps():
    x, y, groups = toy(600, seed=2)
    model = LightGBMMulticlass(booster_params={"num_leaves": 4, "verbose": -1}, max_rounds=40, seed=0)
    folds = tuning_folds(model, x, y, groups, 3)
    group_of = pd.Series(groups, index=x.index)
    record = calibrate(model, folds, None, group_of, "temperature", 3, 15)
    assert record["method"] == "temperature" and record["rows"] == len(y) and record["rows_at_zero"] == 0
    assert set(record["out_of_fold_ece"]) == {"uncalibrated", "temperature", "isotonic"}
    auto = calibrate(model, folds, None, group_of, "auto", 3, 15)
    measured = auto["out_of_fold_ece"]
    assert auto["method"] == ("temperature" if measured["temperature"] < measured["uncalibrated"] else "none")
    assert auto["temperature"] == record["temperature"] and auto["why"].startswith("auto: the temperature")
    assert calibrate(model, folds, None, group_of, "none", 3, 15) == {
        "method": "none", "why": "predictions.calibration: none", "bins": 15}
    with pytest.raises(ValueError, match="predictions.calibration must be one of auto, temperature, none, not 'platt'"):
        calibrate(model, folds, None, group_of, "platt", 3, 15)


def test_a_scored_split_s_report_gives_both_errors_and_the_review_rule_on_the_served_probabilities():
    proba, truth = overconfident(3_000, 2.0, seed=1)
    locations = np.arange(3_000) % 12
    temperature = Temperature(2.0)
    report = scored_calibration(proba, list(range(6)), truth, locations, temperature, 15, 0.5, 200, 0)
    assert report["served"]["ece"] < report["uncalibrated"]["ece"]
    served = temperature.apply(proba).max(axis=1)
    assert report["review_share"] == pytest.approx((served < 0.5).mean())
    right = proba.argmax(axis=1) == truth
    assert report["accuracy_not_reviewed"] == pytest.approx(right[served >= 0.5].mean())
    unscaled = scored_calibration(proba, list(range(6)), truth, locations, None, 15, 0.5, 200, 0)
    assert unscaled["served"] == unscaled["uncalibrated"] == report["uncalibrated"]
