"""What `make repro` ends with: the chosen model and the baselines beside it on the headline split, accuracy and
macro-F1 with their 95% location-bootstrap intervals, in about 20 lines (every row, split and published number:
reports/comparison.md). `python -m models.headline [reports folder]`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

def cell(row: dict, name: str) -> str:
    """A baselines.json row's metric and its 95% interval."""
    low, high = row[f"{name}_ci"]
    return f"{row[name]:.3f} ({low:.3f}-{high:.3f})"


def headline(metrics: dict, baselines: dict) -> list[str]:
    """The lines: what was scored, the chosen row, every other measured row but the single-family ablations
    (best macro-F1 first), and the rows skipped with their reason."""
    chosen = metrics["model"]
    split = metrics["split"]
    family = chosen.split("_all_families")[0]

    def ablation(name: str) -> bool:  # the chosen family on one feature family alone: comparison.md has them
        return name.startswith(f"{family}_") and name.endswith("_only")

    lines = [f"{metrics['scheme']} scheme, split {split}: {metrics['n_images']:,} images of {metrics['n_classes']} "
             f"classes" + (f" at {metrics['holdout_locations']} held-out camera locations"
                           if metrics["scheme"] == "location" else ""),
             f"chosen: {chosen} ({metrics['chosen_by']})", "",
             f"{'model':<74} {'accuracy (95% CI)':<22} macro-F1 (95% CI)"]
    measured = {n: m for n, m in baselines.items() if "skipped" not in m and not ablation(n) and n != chosen}
    for name, m in [(chosen, baselines[chosen]), *sorted(measured.items(), key=lambda e: -e[1]["macro_f1"])]:
        lines.append(f"{name + (' (chosen)' if name == chosen else ''):<74} {cell(m, 'accuracy'):<22} "
                     f"{cell(m, 'macro_f1')}")
    skipped = {n: m["skipped"] for n, m in baselines.items() if "skipped" in m and not ablation(n)}
    ablations = sum(ablation(n) for n in baselines)
    if skipped:
        lines += ["", "skipped:"] + [f"  {n}: {why}"[:160] for n, why in skipped.items()]
    lines += ["", f"{ablations} single-family rows of the chosen family, every split and the published numbers: "
                  f"reports/comparison.md; per-split metrics: reports/baselines.json"]
    return lines


def main(argv: list[str] | None = None) -> None:
    reports = Path((argv if argv is not None else sys.argv[1:] or ["reports"])[0])
    missing = [name for name in ("metrics.json", "baselines.json") if not (reports / name).is_file()]
    if missing:
        sys.exit(f"headline: {reports / missing[0]} not found: the evaluate stage writes it (dvc repro)")
    metrics = json.loads((reports / "metrics.json").read_text())
    baselines = json.loads((reports / "baselines.json").read_text())
    print("\n".join(headline(metrics, baselines)))


if __name__ == "__main__":
    main()
