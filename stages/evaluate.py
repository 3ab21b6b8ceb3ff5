"""DVC stage `evaluate` (see dvc.yaml)."""
from __future__ import annotations

import inspect
import json
import logging
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from infra.atomic import write_json, write_text
from models import baselines, registry, sequence_rows
from models.compare import backbones, compare, comparison_markdown, published
from models.metrics import classification_metrics, smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile
from models.report_plots import write_plots
from models.rerank import Reranker
from models.split import evaluation_split
from stages.common import (FEATURES, REPORTS, HOLDOUT_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS, FIGURES, FEATURE_TABLE,
                           table, labelled_train)

log = logging.getLogger("stages.evaluate")


def ablations(columns: pd.Index) -> dict[str, tuple[str, ...]]:
    """Column prefixes of each single-family model: every family in the table (one per embedding
    backbone), and each embedding family split by view: whole frame (scene) against detector crops (animal)."""
    families = list(dict.fromkeys(str(c).split("__")[0] for c in columns))
    rows = {f: (f"{f}__",) for f in families}
    for f in (f for f in families if f.startswith("embeddings")):
        rows[f"{f}_frame"] = (f"{f}__frame_",)
        rows[f"{f}_crops"] = (f"{f}__crop_", f"{f}__seq_crop_")
    return rows


def fit(model, x: pd.DataFrame, y: np.ndarray, groups: np.ndarray):
    """`model.fit`, with the location groups for the models that stop early on whole cameras."""
    return model.fit(x, y, groups=groups) if "groups" in inspect.signature(model.fit).parameters else model.fit(x, y)


def run(params: dict) -> None:
    """Metrics on every scored split (the held-out locations, or WILDS's val, test, id_val and id_test) for
    every tuned model, the chosen one, its single-family ablations and the baselines, all fitted on the same
    rows and run through one loop; then the comparison with the published numbers."""
    cfg, train_cfg, threads = params["evaluate"], params["train"], params["execution"]["threads"]
    labels, rows = labelled_train()
    record = json.loads(SPLIT_FILE.read_text())
    split = evaluation_split(rows, record["scheme"], record["holdout_locations"])
    fitted = split.fit
    features = EmbeddingPCA.load(HOLDOUT_PCA).transform_file(FeatureFile(FEATURE_TABLE), labels.index)
    tuned = json.loads(BEST_PARAMS.read_text())
    chosen = tuned["chosen"]
    unit, seqs = train_cfg["rows"], rows["seq_id"].to_numpy()
    top_conf = pd.read_parquet(FEATURES / "detector_stats.parquet")[["top_conf"]].reindex(labels.index)
    # models learn on the same rows as the tuned ones (images or sequences); metrics are per image
    x_fit, conf_fit = (sequence_rows.to_rows(f[fitted], seqs[fitted], unit) for f in (features, top_conf))
    y_fit = sequence_rows.row_labels(labels[fitted], seqs[fitted], unit).to_numpy()
    groups = sequence_rows.row_groups(rows.loc[fitted, "location"], seqs[fitted], unit)
    scored = {name: (sequence_rows.to_rows(features[m], seqs[m], unit),
                     sequence_rows.to_rows(top_conf[m], seqs[m], unit), labels[m].to_numpy(), seqs[m])
              for name, m in split.scored.items()}

    def tuned_model(name: str, columns: list[str] | None = None):
        return registry.build(name, train_cfg, tuned["models"][name]["params"], threads), columns

    embedding_columns = [c for c in features.columns if str(c).startswith("embeddings")]
    # name: (model, its columns: all features if None, or the detector's confidence)
    models: dict = {"majority_class": (baselines.majority_class(), None),
                    "detector_only": (baselines.DetectorRule(cfg["detector_threshold"]), "top_conf"),
                    "linear_probe_all_families": (baselines.linear_probe(train_cfg["class_weight"], train_cfg["seed"],
                                                                         cfg["probe_max_iter"]), None)}
    if embedding_columns:
        models["linear_probe_embeddings"] = (baselines.linear_probe(
            train_cfg["class_weight"], train_cfg["seed"], cfg["probe_max_iter"]), embedding_columns)
    multiclass = tuned["models"].get(registry.LightGBMMulticlass.NAME, {})
    results: dict[str, dict] = {}
    if "skipped" in multiclass:  # too many rows x classes for the multiclass trees (models.registry)
        results.update({n: {"skipped": multiclass["skipped"]} for n in (
            "hist_gradient_boosting", f"{registry.LightGBMMulticlass.NAME}_all_families")})
    else:
        models["hist_gradient_boosting"] = (baselines.HistGradientBoosting(
            multiclass["params"], train_cfg["class_weight"], train_cfg["cv_folds"], train_cfg["max_rounds"],
            train_cfg["early_stopping_rounds"], train_cfg["seed"]), None)
        models[f"{registry.LightGBMMulticlass.NAME}_all_families"] = tuned_model(registry.LightGBMMulticlass.NAME)
    models[f"{Reranker.NAME}_all_families"] = tuned_model(Reranker.NAME)
    single_family = set()
    for family, prefixes in ablations(features.columns).items():
        columns = [c for c in features.columns if c.startswith(prefixes)]
        # one family alone is the all-families row; a view with no column (no crops without a detector file)
        # has no row
        if 0 < len(columns) < features.shape[1]:
            single_family.add(f"{chosen}_{family}_only")
            models[f"{chosen}_{family}_only"] = tuned_model(chosen, columns)

    row = f"{chosen}_all_families"  # the chosen model family on all feature families
    reported = f"{row}_sequence_smoothed" if cfg["smoothing"] else row
    primary = next(iter(split.scored))
    smoothed_rows = (row, "linear_probe_all_families", "linear_probe_embeddings")
    for name, (estimator, columns) in tqdm(models.items(), desc="evaluate: models", unit="model"):
        xf = conf_fit if columns == "top_conf" else x_fit if columns is None else x_fit[columns]
        started = time.perf_counter()
        fit(estimator, xf, y_fit, groups)
        seconds = time.perf_counter() - started
        classes = [int(c) for c in estimator.classes_]
        for split_name, (x, conf, y, seq) in scored.items():
            xv = conf if columns == "top_conf" else x if columns is None else x[columns]
            proba = sequence_rows.to_images(estimator.predict_proba(xv), xv.index, seq, unit)
            variants = {name: proba}
            if name in smoothed_rows:
                variants[f"{name}_sequence_smoothed"] = smooth_by_sequence(proba, seq)
            for variant, p in variants.items():
                results.setdefault(variant, {"fit_seconds": seconds, "splits": {}})["splits"][split_name] = \
                    classification_metrics(y, p, classes, seq)
            if name == row and split_name == primary:
                model, reported_proba = estimator, variants[reported]
    per_class = results[reported]["splits"][primary]["per_class"]
    summary = {name: {"skipped": m["skipped"]} if "skipped" in m else dict(
        {k: v for k, v in m["splits"][primary].items() if k != "per_class"}, fit_seconds=m["fit_seconds"],
        split=primary, splits={s: {k: v for k, v in r.items() if k != "per_class"} for s, r in m["splits"].items()})
        for name, m in results.items()}
    classes = [int(c) for c in model.classes_]
    metrics = dict(summary[reported], model=reported, chosen_by=tuned["why"], scheme=record["scheme"],
                   holdout_locations=int(rows.loc[split.scored[primary], "location"].nunique()),
                   unseen_classes=sorted(set(int(c) for c in labels[split.scored[primary]]) - set(classes)),
                   tuning_cv_log_loss={n: m["cv_log_loss"] for n, m in tuned["models"].items() if "cv_log_loss" in m})
    x, _, y, seq = scored[primary]
    if isinstance(model, Reranker):
        metrics.update(candidates=min(model.candidates, len(classes)),
                       candidate_recall=model.candidate_recall(x, sequence_rows.row_labels(
                           labels[split.scored[primary]], seq, unit).to_numpy()))
    for name, m in summary.items():
        if "skipped" in m:
            log.info("evaluate: %-50s %s", name, m["skipped"])
        else:
            log.info("evaluate: %-50s %s", name, "  ".join(
                f"{s} accuracy {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f}" for s, r in m["splits"].items()))
    write_json(metrics, REPORTS / "metrics.json")
    write_json(summary, REPORTS / "baselines.json")
    comparison = compare(summary, record["scheme"], published(), backbones(features.columns), single_family)
    write_json(comparison, REPORTS / "comparison.json")
    write_text(comparison_markdown(comparison), REPORTS / "comparison.md")
    predicted = np.asarray(classes)[reported_proba.argmax(axis=1)]
    write_plots(y, predicted, per_class, model.booster_, table("categories")["name"], PLOTS, FIGURES)
