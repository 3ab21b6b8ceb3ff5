"""Benchmark: dating a supplemental source from the iNat competition's location files at their real size.

Run by hand: `.venv/bin/python benchmarks/inat_locations.py [--photos 8000]`. iNat 2017's location files cover
every competition image, not only the organisers' mapped subset: 579,184 train and 95,986 val records
(visipedia/inat_comp, 2017). This writes both in the published format (sample.inaturalist.location_record) with
`--photos` of their ids in a source (the rehearsal's estimate of the 2017 subset: 8,000), then times
`load`'s part (data.supplemental._dates: parse, match the source's ids, read the dates) against parsing the same
bytes alone (orjson, the reference in the same run), and the resident memory it adds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import QualityReport  # noqa: E402
from data.supplemental import Source, _dates  # noqa: E402
from sample.inaturalist import location_record  # noqa: E402

RECORDS = {"train2017_locations.json": 579_184, "val2017_locations.json": 95_986}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root, first = Path(tmp), 0
        for name, n in RECORDS.items():
            (root / name).write_bytes(orjson.dumps([location_record(rng, first + k, None, 0.05) for k in range(n)]))
            first += n
        size = sum((root / name).stat().st_size for name in RECORDS) / 1e6
        ids = np.sort(rng.choice(first, args.photos, replace=False))
        photos = pd.Index([f"inat2017:{i}" for i in ids], name="image_id")
        source = Source("inat2017", "unused.json", "unused", None, tuple(RECORDS))
        start = time.perf_counter()
        for name in RECORDS:
            orjson.loads((root / name).read_bytes())
        parse = time.perf_counter() - start
        rss = psutil.Process().memory_info().rss
        start = time.perf_counter()
        report = QualityReport()
        dates = _dates(root, source, photos, (2000, 2030), report)
        seconds = time.perf_counter() - start
        added = (psutil.Process().memory_info().rss - rss) / 1e9
    print(json.dumps({"records": first, "megabytes": round(size, 1), "photos": args.photos,
                      "photos_dated": int(dates.notna().sum()), "parse_s": round(parse, 2),
                      "dates_s": round(seconds, 2), "ratio_to_parse": round(seconds / parse, 2),
                      "rss_added_gb": round(added, 2), "skipped": dict(report.counts)}, indent=1))


if __name__ == "__main__":
    main()
