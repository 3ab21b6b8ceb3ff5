"""Data-quality bookkeeping: every record we skip or repair is counted and shown, never dropped silently."""
from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from typing import Callable, Hashable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXAMPLES_KEPT = 10


class DataError(ValueError):
    """A defect that makes a whole input unusable; the message names the file and the record."""


class QualityReport:
    """Counts of skipped or repaired records by reason, with the first few examples of each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.read: Counter[str] = Counter()
        self.notes: dict[str, object] = {}

    def skip(self, reason: str, record: str, n: int = 1) -> None:
        """Record `n` skipped records for `reason`; `record` describes one example (file and id)."""
        if n <= 0:
            return
        self.counts[reason] += n
        if len(self.examples[reason]) < EXAMPLES_KEPT:
            self.examples[reason].append(record)

    def skip_many(self, reason: str, records: list[str]) -> None:
        """Record each of `records` as skipped for `reason`."""
        if records:
            self.counts[reason] += len(records)
            room = EXAMPLES_KEPT - len(self.examples[reason])
            self.examples[reason].extend(records[: max(room, 0)])

    def count_read(self, what: str, n: int) -> None:
        self.read[what] += n

    def note(self, key: str, value: object) -> None:
        """Record a fact about the input that is neither a count nor a skip (e.g. the bbox convention)."""
        self.notes[key] = value

    def to_dict(self) -> dict:
        return {
            "read": dict(sorted(self.read.items())),
            "notes": dict(sorted(self.notes.items())),
            "skipped": dict(sorted(self.counts.items())),
            "examples": {k: v for k, v in sorted(self.examples.items()) if k in self.counts},
        }

    def log_summary(self, stage: str) -> None:
        for what, n in sorted(self.read.items()):
            log.info("%s: read %d %s", stage, n, what)
        for key, value in sorted(self.notes.items()):
            log.info("%s: %s = %s", stage, key, value)
        for reason, n in sorted(self.counts.items()):
            log.warning("%s: skipped %d (%s), e.g. %s", stage, n, reason, self.examples[reason][:3])


def as_written(value: object) -> str:
    """A raw value as its file wrote it, for an error message: text quoted, an empty or absent one said so,
    numbers as plain Python (never numpy's repr)."""
    if isinstance(value, str):
        return repr(value) if value else "'' (empty)"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null (or absent)"
    return repr(value.item() if isinstance(value, np.generic) else value)


def integer_column(values: pd.Series, column: str, record: Callable[[Hashable], str]) -> pd.Series:
    """A required integer column as int64; the first value that is not an integer is a DataError naming the
    record (`record(label)`: the file and the row) and the value as written."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers != np.floor(numbers))
    if bad.any():
        at = bad.idxmax()
        raise DataError(f"{record(at)} has invalid {column!r} = {as_written(values[at])}")
    return numbers.astype("int64")


def count_per_split(stage: str, images: pd.DataFrame, lacking: np.ndarray, column: str, note: str,
                    report: QualityReport, warn_share: float, warning: str) -> None:
    """Per split (the official WILDS split, or train/test), how many images are `lacking` (`column`) and their
    share, noted in the report under `note`, and a warning line per split past `warn_share` (`warning`: the
    stage's words after "N of M <split> images (x%)"): a partial download must be obvious."""
    split = images["wilds_split"] if "wilds_split" in images else images["split"]
    counts = pd.DataFrame({"images": split.value_counts(), column: split[lacking].value_counts()})
    counts = counts.fillna(0).astype(int)
    counts["share"] = (counts[column] / counts["images"]).round(4)
    report.note(note, counts.to_dict(orient="index"))
    for name, row in counts[counts["share"] > warn_share].iterrows():
        log.warning("%s: %d of %d %s images (%.1f%%) %s: is the download complete?", stage, row[column],
                    row["images"], name, 100 * row["share"], warning)
