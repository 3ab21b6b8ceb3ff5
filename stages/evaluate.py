"""DVC stage `evaluate` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.utils.metadata_routing import get_routing_for_object
from tqdm import tqdm

from data.quality import DataError
from infra.artifacts import (FEATURES, REPORTS, HOLDOUT_PCA, SPLIT_FILE, BEST_PARAMS, CALIBRATION, PLOTS, FIGURES,
                              FEATURE_TABLE, QUALITY, table)
from infra.atomic import write_json, write_text
from infra.blas import one_blas_thread
from models import baselines, registry, sequence_rows
from models.bootstrap import location_intervals
from models.calibration import load_temperature, scored_calibration
from models.compare import (backbones, calibration_markdown, compare, comparison_markdown, counterpart, published,
                            supplemental_effect)
from models.labelled import labelled_rows
from models.lgbm import supplemental_weights
from models.metrics import classification_metrics, smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile
from models.report_plots import write_interval_plots, write_plots, write_reliability_plot, write_supplemental_plot
from models.rerank import Reranker
from models.split import Evaluation, NotFittable, evaluation_split

log = logging.getLogger("stages.evaluate")
SMOOTHED = ("linear_probe_all_families", "linear_probe_embeddings")  # rows reported smoothed too, beside the chosen


def ablations(columns: pd.Index) -> dict[str, tuple[str, ...]]:
    """Column prefixes of each single-family model: every family in the table (one per embedding
    backbone), and each embedding family split by view: whole frame (scene) against detector crops (animal)."""
    families = list(dict.fromkeys(str(c).split("__")[0] for c in columns))
    rows = {f: (f"{f}__",) for f in families}
    for f in (f for f in families if f.startswith("embeddings")):
        rows[f"{f}_frame"] = (f"{f}__frame_",)
        rows[f"{f}_crops"] = (f"{f}__crop_", f"{f}__seq_crop_")
    return rows


def fit(model, x: pd.DataFrame, y: np.ndarray, meta: dict[str, np.ndarray], weight: np.ndarray | None):
    """`model.fit`, with the fit metadata (`groups`, `supplemental`) and the supplemental rows' `weight` where the
    model requests them (scikit-learn's metadata routing: the models that stop early on whole cameras take the
    `groups` and the `supplemental` mask, `set_fit_request` in `candidates`; the linear probes take
    `sample_weight`)."""
    routing = get_routing_for_object(model)
    given = {**meta, "sample_weight": weight}
    return model.fit(x, y, **{k: v for k, v in given.items() if v is not None and routing.consumes("fit", [k])})


@dataclass
class Rows:
    """One set of rows as the models see them (images or sequences), their detector confidence, and per image
    the labels, sequences and locations the metrics and their intervals need."""
    x: pd.DataFrame
    top_conf: pd.DataFrame
    y: np.ndarray
    seq: np.ndarray
    locations: np.ndarray

    def columns(self, which) -> pd.DataFrame:
        """A model's columns: all features (None), the detector's confidence ("top_conf"), or a list."""
        return self.top_conf if which == "top_conf" else self.x if which is None else self.x[which]


def candidates(params: dict, tuned: dict, columns: pd.Index, top_conf: pd.DataFrame, absent: dict[str, str],
               used: bool, photos: bool) -> tuple[dict, dict[str, dict], set[str]]:
    """(the models to fit: name -> (estimator, its columns, whether it trains on the supplemental rows), the
    rows skipped with their reason, the names of the single-family ablations). Every baseline and tuned family
    on all features, the chosen family on each family alone; a model whose evidence does not exist is skipped
    with the reason, never scored as zeros. The learned models train on the supplemental rows where the run
    `used` them; with `photos` to train on, the chosen family and the linear probe on all families are also
    fitted the other way round. The two rules (majority class, detector) describe camera-trap frames: camera
    rows only."""
    cfg, train_cfg, threads = params["evaluate"], params["train"], params["execution"]["threads"]
    chosen = tuned["chosen"]

    def tuned_model(name: str, only: list[str] | None = None, supplemental: bool = used):
        return registry.build(name, train_cfg, tuned["models"][name]["params"], threads).set_fit_request(
            groups=True, supplemental=True), only, supplemental

    def probe(only: list[str] | None = None, supplemental: bool = used):
        return baselines.linear_probe(train_cfg["class_weight"], train_cfg["seed"], cfg["probe_max_iter"]), only, \
            supplemental

    models: dict = {"majority_class": (baselines.majority_class(), None, False),
                    "detector_only": (baselines.DetectorRule(cfg["detector_threshold"]), "top_conf", False),
                    "linear_probe_all_families": probe()}
    if photos:
        models[counterpart("linear_probe_all_families", used)] = probe(supplemental=not used)
    skipped: dict[str, dict] = {}
    if not top_conf["top_conf"].notna().any():
        del models["detector_only"]
        skipped["detector_only"] = {"skipped": "no MegaDetector output for any image (reports/quality/load.json)"}
    embedding_columns = [c for c in columns if str(c).startswith("embeddings")]
    if embedding_columns:
        models["linear_probe_embeddings"] = probe(embedding_columns)
    for name, entry in tuned["models"].items():
        if "skipped" in entry:  # train's reason: over the row x class cap, or not tunable on these rows
            skipped[f"{name}_all_families"] = {"skipped": entry["skipped"]}
        else:
            models[f"{name}_all_families"] = tuned_model(name)
    if photos:
        models[counterpart(f"{chosen}_all_families", used)] = tuned_model(chosen, supplemental=not used)
    multiclass = tuned["models"].get(registry.LightGBMMulticlass.NAME, {})
    if "skipped" in multiclass:
        skipped["hist_gradient_boosting"] = {"skipped": multiclass["skipped"]}
    else:
        models["hist_gradient_boosting"] = (baselines.HistGradientBoosting(
            multiclass["params"], train_cfg["class_weight"], train_cfg["cv_folds"], train_cfg["max_rounds"],
            train_cfg["early_stopping_rounds"], train_cfg["seed"], train_cfg["supplemental_weight"]
        ).set_fit_request(groups=True, supplemental=True), None, used)
    single_family = {f"{chosen}_{family}_only" for family in absent}
    skipped.update({f"{chosen}_{family}_only": {"skipped": f"skipped: {why}"} for family, why in absent.items()})
    for family, prefixes in ablations(columns).items():
        only = [c for c in columns if c.startswith(prefixes)]
        # one family alone is the all-families row; a view with no column has no row
        if 0 < len(only) < len(columns):
            single_family.add(f"{chosen}_{family}_only")
            models[f"{chosen}_{family}_only"] = tuned_model(chosen, only)
    return models, skipped, single_family


def fit_and_score(models: dict, fitted: Rows, y_rows: np.ndarray, meta: dict[str, np.ndarray],
                  supplemental_weight: float, scored: dict[str, Rows], unit: str, smoothed: tuple[str, ...],
                  reported: str) -> tuple[dict, object, dict[str, np.ndarray]]:
    """(results per row name: fit seconds and metrics per scored split, or the reason it was skipped; the
    estimator of the `reported` row, None if it was skipped, and its probabilities on each scored split).
    `fitted` are every training row, the supplemental ones (`meta["supplemental"]`) included: a model
    that does not train on them fits on the others, and one that does, on those with a value in its columns
    (a photo has none in a camera-only family: its label alone would only shift the class balance). Rows in
    `smoothed` are also reported averaged over each sequence's frames."""
    results, kept, kept_proba = {}, None, {}
    camera = ~meta["supplemental"]
    for name, (estimator, columns, supplemental) in tqdm(models.items(), desc="evaluate: models", unit="model"):
        x, y, m = fitted.columns(columns), y_rows, meta
        keep = camera | (x.notna().any(axis=1).to_numpy() if supplemental else False)
        if not keep.all():
            x, y, m = x[keep], y[keep], {k: v[keep] for k, v in meta.items()}
        started = time.perf_counter()
        try:
            fit(estimator, x, y, m, supplemental_weights(m["supplemental"], supplemental_weight))
        except NotFittable as e:
            results[name] = {"skipped": f"skipped: {e}"}
            continue
        seconds = time.perf_counter() - started
        classes = [int(c) for c in estimator.classes_]
        for split_name, rows in scored.items():
            xv = rows.columns(columns)
            proba = sequence_rows.to_images(estimator.predict_proba(xv), xv.index, rows.seq, unit)
            variants = {name: proba}
            if name in smoothed:
                variants[f"{name}_sequence_smoothed"] = smooth_by_sequence(proba, rows.seq)
            for variant, p in variants.items():
                entry = results.setdefault(variant, {"fit_seconds": seconds, "splits": {}, "predicted": {}})
                entry["splits"][split_name] = classification_metrics(rows.y, p, classes, rows.seq)
                entry["predicted"][split_name] = np.asarray(classes)[p.argmax(axis=1)]
                if variant == reported:
                    kept, kept_proba[split_name] = estimator, p
    return results, kept, kept_proba


@dataclass
class SupplementalRows:
    """What the reports say about the supplemental rows: whether this run's models train on them (`used`),
    how many there are and their weight, each compared model's (with, without) row names, the camera-trap
    training images per class (which classes are rare) and the rows that trained on them."""
    used: bool
    rows: int
    weight: float
    pairs: dict[str, tuple[str, str]]
    camera_counts: pd.Series
    trained_with: set[str]
    why: str


@one_blas_thread()
@config_context(enable_metadata_routing=True)
def run(params: dict) -> None:
    """Metrics on every scored split (the held-out locations, or WILDS's val, test, id_val and id_test) for
    every tuned model, the chosen one, its single-family ablations and the baselines, all fitted on the same
    rows and run through one loop; the chosen family and the linear probe also the other way round as to the
    supplemental rows; then the comparison with the published numbers."""
    cfg, unit, smoothing = params["evaluate"], params["train"]["rows"], params["predictions"]["sequence_smoothing"]
    labels, rows = labelled_rows()
    record = json.loads(SPLIT_FILE.read_text())
    used = record["supplemental"]
    split = evaluation_split(rows, record["scheme"], record["holdout_locations"], used)
    features = EmbeddingPCA.load(HOLDOUT_PCA).transform_file(FeatureFile(FEATURE_TABLE), labels.index)
    tuned = json.loads(BEST_PARAMS.read_text())
    top_conf = pd.read_parquet(FEATURES / "detector_stats.parquet")[["top_conf"]].reindex(labels.index)
    absent = json.loads((QUALITY / "join.json").read_text())["notes"]["absent families and views"]
    seqs = rows["seq_id"].to_numpy()

    def rows_of(mask: np.ndarray) -> Rows:
        return Rows(sequence_rows.to_rows(features[mask], seqs[mask], unit),
                    sequence_rows.to_rows(top_conf[mask], seqs[mask], unit), labels[mask].to_numpy(), seqs[mask],
                    rows.loc[mask, "location"].to_numpy())

    # models learn on the same rows as the tuned ones (images or sequences), each with or without the
    # supplemental ones; metrics are per image
    trains, photos = split.fit | split.supplemental, bool(split.supplemental.any())
    fitted = rows_of(trains)
    y_rows = sequence_rows.row_labels(labels[trains], seqs[trains], unit).to_numpy()
    meta = sequence_rows.row_metadata(rows[trains], seqs[trains], unit)
    scored = {name: rows_of(mask) for name, mask in split.scored.items()}
    models, skipped, single_family = candidates(params, tuned, features.columns, top_conf[trains], absent, used,
                                                photos)
    row = f"{tuned['chosen']}_all_families"  # the chosen model family on all feature families
    reported = f"{row}_sequence_smoothed" if smoothing else row
    compared = (row, "linear_probe_all_families") if photos else ()
    smoothed = (row, *SMOOTHED, *(counterpart(name, used) for name in compared))
    weight = params["train"]["supplemental_weight"]
    results, model, proba = fit_and_score(models, fitted, y_rows, meta, weight, scored, unit, smoothed, reported)
    if model is None:
        raise DataError(f"evaluate: the chosen model {row} could not be fitted: {results[row]['skipped']}")
    calibration = json.loads(CALIBRATION.read_text())
    temperature, review_below = load_temperature(calibration), params["predictions"]["review_below"]
    calibration["scored"] = {
        name: scored_calibration(proba[name], model.classes_, split_rows.y, split_rows.locations, temperature,
                                 params["predictions"]["calibration_bins"], review_below, cfg["bootstrap_replicates"],
                                 cfg["bootstrap_seed"]) for name, split_rows in scored.items()}
    add_intervals(results, scored, reported, cfg["bootstrap_replicates"], cfg["bootstrap_seed"])
    variant, pairs = "_sequence_smoothed" if smoothing else "", {}
    for name in compared:
        this, other = name + variant, counterpart(name, used) + variant
        if "splits" in results[this] and "splits" in results[other]:  # (with, without); a skipped row has no pair
            pairs[name] = (this, other) if used else (other, this)
    trained_with = {f"{name}{v}" for name, (_, _, supplemental) in models.items() if supplemental and photos
                    for v in ("", "_sequence_smoothed")}
    supplemental = SupplementalRows(used and photos, int(split.supplemental.sum()), weight, pairs,
                                    labels[split.fit & ~split.supplemental].value_counts(), trained_with,
                                    record["supplemental_why"])
    write_reports({**skipped, **results}, reported, model, proba[next(iter(scored))], tuned, record["scheme"], split,
                  rows, labels, scored, unit, features.columns, single_family, supplemental,
                  cfg["rare_class_max_images"], calibration, review_below)


def write_reports(results: dict, reported: str, model, proba: np.ndarray, tuned: dict, scheme: str,
                  split: Evaluation, rows: pd.DataFrame, labels: pd.Series, scored: dict[str, Rows], unit: str,
                  columns: pd.Index, single_family: set[str], supplemental: SupplementalRows, rare_max: int,
                  calibration: dict, review_below: float) -> None:
    """metrics.json, baselines.json, timings.json, the comparison (json and markdown) and the plots, from every
    row's results, the reported row's estimator and probabilities on the headline split and its calibration
    (calibration.json with each scored split's report under `scored`)."""
    primary = next(iter(split.scored))
    per_class = {name: m["splits"][primary]["per_class"] for name, m in results.items() if "splits" in m}
    effect = supplemental_effect(results, supplemental.pairs, primary, supplemental.camera_counts, rare_max)
    summary = summarise(results, primary)
    metrics = headline_metrics(summary[reported], reported, model, tuned, scheme, split, rows, labels,
                               scored[primary], unit)
    metrics["supplemental"] = {"trained_with": supplemental.used, "rows": supplemental.rows,
                               "weight": supplemental.weight, "why": supplemental.why}
    headline = calibration["scored"][primary]
    metrics.update(ece=headline["served"]["ece"], ece_ci=headline["served"]["ece_ci"],
                   ece_uncalibrated=headline["uncalibrated"]["ece"],
                   ece_uncalibrated_ci=headline["uncalibrated"]["ece_ci"], calibration=calibration["method"],
                   temperature=calibration.get("temperature"), review_share=headline["review_share"],
                   accuracy_not_reviewed=headline["accuracy_not_reviewed"])
    write_json(flat(metrics), REPORTS / "metrics.json")
    write_json(summary, REPORTS / "baselines.json")
    # how long each fit took is how the machine ran, not a result: kept out of the metrics `dvc metrics diff` reads
    write_json({name: m["fit_seconds"] for name, m in results.items() if "fit_seconds" in m}, REPORTS / "timings.json")
    comparison = compare(summary, scheme, published(), backbones(columns), single_family, split.unscored,
                         supplemental.trained_with) + effect
    comparison += [{"model": reported, "kind": "calibration", "split": name,
                    **{k: v for k, v in r.items() if k != "reliability"}} for name, r in calibration["scored"].items()]
    write_json(comparison, REPORTS / "comparison.json")
    write_text(comparison_markdown(comparison) + "\n".join(calibration_markdown(
        calibration, calibration["scored"], reported, review_below)) + "\n", REPORTS / "comparison.md")
    write_reliability_plot(calibration["scored"][primary], primary, PLOTS, FIGURES)
    names = table("categories")["name"]
    write_plots(scored[primary].y, np.asarray(model.classes_)[proba.argmax(axis=1)], per_class[reported],
                model.booster_, names, primary, PLOTS, FIGURES)
    write_interval_plots(summary, primary, reported, PLOTS, FIGURES)
    chosen = supplemental.pairs.get(f"{tuned['chosen']}_all_families")
    write_supplemental_plot(*((per_class[chosen[0]], per_class[chosen[1]]) if chosen else ({}, {})),
                            supplemental.camera_counts, names, primary, PLOTS, FIGURES)


def add_intervals(results: dict, scored: dict[str, Rows], reported: str, replicates: int, seed: int) -> None:
    """Each measured row's 95% intervals of accuracy and macro-F1 on every scored split, from a bootstrap over
    that split's locations, and its paired difference to the reported (chosen) row (models.bootstrap); the
    predictions they are computed from are dropped."""
    measured = {name: m for name, m in results.items() if "predicted" in m}
    for split_name, rows in scored.items():
        found = location_intervals(rows.y, {name: m["predicted"][split_name] for name, m in measured.items()},
                                   rows.locations, reported, replicates, seed)
        for name, extra in found.items():
            measured[name]["splits"][split_name].update(extra)
    for m in measured.values():
        del m["predicted"]


def summarise(results: dict, primary: str) -> dict:
    """baselines.json: each row's headline-split metrics and every split's, or the reason it was skipped."""
    def without_per_class(metrics: dict) -> dict:
        return {k: v for k, v in metrics.items() if k != "per_class"}
    summary = {}
    for name, m in results.items():
        if "skipped" in m:
            summary[name] = {"skipped": m["skipped"]}
            log.info("evaluate: %-50s %s", name, m["skipped"])
            continue
        summary[name] = dict(without_per_class(m["splits"][primary]), split=primary,
                             splits={s: without_per_class(r) for s, r in m["splits"].items()})
        log.info("evaluate: %-50s %s", name, "  ".join(
            f"{s} accuracy {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f}" for s, r in m["splits"].items()))
    return summary


def flat(metrics: dict) -> dict:
    """metrics.json as DVC shows it best, one scalar per key: an interval's ends as `<metric>_ci_low` and
    `_ci_high`, a section's keys prefixed by its name (`supplemental_rows`, `tuning_cv_log_loss_reranker`,
    `unscored_splits_id_val`), the unseen classes' ids as one string; the other splits' metrics are the chosen
    row's `splits` in baselines.json."""
    out = {}
    for key, value in metrics.items():
        if key == "splits":
            continue
        if key.endswith("_ci"):
            out[f"{key}_low"], out[f"{key}_high"] = value
        elif isinstance(value, dict):
            out.update({f"{key}_{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            out[key] = " ".join(str(v) for v in value)
        else:
            out[key] = value
    return out


def headline_metrics(reported_summary: dict, reported: str, model, tuned: dict, scheme: str, split: Evaluation,
                     rows: pd.DataFrame, labels: pd.Series, headline: Rows, unit: str) -> dict:
    """metrics.json: the chosen model on the headline split, why it was chosen, what it could not be scored on."""
    primary = next(iter(split.scored))
    classes = [int(c) for c in model.classes_]
    metrics = dict(reported_summary, model=reported, chosen_by=tuned["why"], scheme=scheme,
                   holdout_locations=int(rows.loc[split.scored[primary], "location"].nunique()),
                   unseen_classes=sorted(set(int(c) for c in labels[split.scored[primary]]) - set(classes)),
                   training_images_without_pixels=split.without_pixels, unscored_splits=split.unscored,
                   tuning_cv_log_loss={n: m["cv_log_loss"] for n, m in tuned["models"].items() if "cv_log_loss" in m})
    if isinstance(model, Reranker):
        metrics.update(candidates=model.candidates_,
                       candidate_recall=model.candidate_recall(headline.x, sequence_rows.row_labels(
                           labels[split.scored[primary]], headline.seq, unit).to_numpy()))
    return metrics
