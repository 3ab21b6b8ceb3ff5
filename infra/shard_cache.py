"""A chunked on-disk cache of per-item results, so a rerun computes only what changed.

Each finished chunk is one parquet shard written atomically, so an interrupted run keeps every chunk it
finished and never leaves a partial one. Rows carry the key they were computed for; a key should hash
everything the result depends on (input file identity, parameters, the code that computed it).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from infra.atomic import write_parquet
from infra.hashing import digest

log = logging.getLogger(__name__)
KEY = "cache_key"
Item = TypeVar("Item")


class ShardCache:
    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self, keys: set[str]) -> pd.DataFrame:
        """Cached rows whose key is in `keys` (the newest shard wins if a key was computed twice)."""
        shards = sorted(self.folder.glob("shard-*.parquet"), key=lambda p: p.stat().st_mtime_ns)
        frames = [f for f in (pd.read_parquet(p) for p in shards) if len(f)]
        if not frames:
            return pd.DataFrame()
        rows = pd.concat(frames)  # then one lookup: one per shard was shards x keys (20 min at 280k images)
        rows = rows[rows[KEY].isin(keys)]
        return rows[~rows.index.duplicated(keep="last")]

    def add(self, rows: pd.DataFrame) -> None:
        """Store one chunk of rows (each with its `cache_key`) as a new shard."""
        name = digest(sorted(set(rows[KEY])))
        write_parquet(rows, self.folder / f"shard-{name}.parquet")

    def fill(self, work: list[tuple[str, Item]], compute_chunk: Callable[[list[tuple[str, Item]]], pd.DataFrame], *,
             chunk_size: int, n_jobs: int, desc: str, unit: str, columns: list[str],
             size_of: Callable[[Item], int] = lambda item: 1) -> tuple[pd.DataFrame, int, int]:
        """Rows for every (key, item) of `work`: the cached rows of their keys, and the rest computed by
        `compute_chunk` on chunks of `chunk_size` items through joblib (in this process, its workers, or a
        Dask cluster inside `joblib.parallel_config(backend="dask")`), each chunk stored as a shard as soon
        as it arrives (a killed run keeps it), with a progress bar over `size_of` the items to compute (e.g.
        images of a sequence). Also how many rows were computed and how many came from the cache."""
        cached = self.load({key for key, _ in work})
        done = set(cached.get(KEY, ()))
        todo = [(key, item) for key, item in work if key not in done]
        log.info("%s: %d cached, %d to compute", desc, len(work) - len(todo), len(todo))
        jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(compute_chunk)(todo[i:i + chunk_size]) for i in range(0, len(todo), chunk_size))
        fresh = []
        with tqdm(total=sum(size_of(item) for _, item in todo), desc=desc, unit=unit) as bar:
            for rows in jobs:
                self.add(rows)
                fresh.append(rows)
                bar.update(len(rows))
        rows = pd.concat([cached, *fresh]) if fresh or len(cached) else pd.DataFrame(columns=columns)
        return rows, sum(len(r) for r in fresh), len(cached)
