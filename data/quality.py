"""Data-quality bookkeeping: every record we skip or repair is counted and shown, never dropped silently."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

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
