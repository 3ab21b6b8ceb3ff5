"""PCA of each embedding block (frame, crop, sequence crop), fitted on a model's training rows only.

Trees split one column at a time, so 1280 correlated CNN dimensions per view cost fit time and help little;
a few dozen principal components keep most of the variance. The projection is part of the model: it is
fitted where the model is fitted, saved beside it (npz, no pickle) and applied to validation and test rows.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.decomposition import PCA

from data.embeddings import float_block
from infra.atomic import atomic_path

BLOCK_RE = re.compile(r"^(?P<block>.+)_emb_(?P<k>\d+)$")  # e.g. embeddings__frame_emb_17


def embedding_blocks(columns: pd.Index) -> dict[str, list[str]]:
    """Embedding columns grouped by block name, each in dimension order."""
    blocks: dict[str, list[tuple[int, str]]] = {}
    for c in columns:
        if m := BLOCK_RE.match(str(c)):
            blocks.setdefault(m["block"], []).append((int(m["k"]), c))
    return {b: [c for _, c in sorted(cols)] for b, cols in blocks.items()}


class FeatureFile:
    """The joined feature table, read for chosen rows one embedding block at a time: at iWildCam's shape
    its 280k rows x 3,840 embedding columns are 4.3 GB of float32, which the PCA never needs at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        schema = pq.read_schema(path)
        self.index_name = schema.pandas_metadata["index_columns"][0]
        columns = pd.Index([n for n in schema.names if n != self.index_name])
        self.blocks = embedding_blocks(columns)
        in_blocks = {c for cols in self.blocks.values() for c in cols}
        self.plain_columns = [c for c in columns if c not in in_blocks]
        self.ids = pd.Index(pq.read_table(path, columns=[self.index_name]).column(0).to_pandas())

    def positions(self, ids: pd.Index) -> np.ndarray:
        positions = self.ids.get_indexer(ids)
        if (positions < 0).any():
            raise KeyError(f"{self.path}: {(positions < 0).sum()} image ids not in the feature table")
        return positions

    def plain(self, positions: np.ndarray) -> pd.DataFrame:
        """The columns outside embedding blocks, at these row positions."""
        frame = pq.read_table(self.path, columns=[self.index_name, *self.plain_columns]).to_pandas()
        return frame.iloc[positions]

    def block(self, columns: list[str], positions: np.ndarray) -> np.ndarray:
        """(rows, len(columns)) float32 of one block at these row positions."""
        return float_block(self.path, columns)[positions]


class EmbeddingPCA:
    def __init__(self, means: dict[str, np.ndarray], components: dict[str, np.ndarray]) -> None:
        self.means, self.components = means, components

    @classmethod
    def fit_transform_file(cls, table: FeatureFile, ids: pd.Index, n_components: int, seed: int
                           ) -> tuple["EmbeddingPCA", pd.DataFrame]:
        """One PCA per embedding block, fitted on the rows `ids` of the feature table where that block is
        present (a view can be absent: no crop), and those rows projected; each block read once and alone in
        memory."""
        positions = table.positions(ids)
        pca, parts = cls({}, {}), [table.plain(positions)]
        for block, cols in table.blocks.items():
            x = table.block(cols, positions)
            if pca._fit_block(block, x, n_components, seed):
                parts.append(pca._project(block, x, parts[0].index))
        return pca, pd.concat(parts, axis=1)

    def _fit_block(self, block: str, x: np.ndarray, n_components: int, seed: int) -> bool:
        """Fit one block's PCA on its present rows; False (block left out) if there are none."""
        x = x[~np.isnan(x).any(axis=1)]
        k = min(n_components, *x.shape)
        if k == 0:
            return False
        pca = PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed).fit(x)
        self.means[block], self.components[block] = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        return True

    def _project(self, block: str, x: np.ndarray, index: pd.Index) -> pd.DataFrame:
        return pd.DataFrame((x - self.means[block]) @ self.components[block].T, index=index,
                            columns=[f"{block}_pc_{j}" for j in range(len(self.components[block]))])

    def transform_file(self, table: FeatureFile, ids: pd.Index) -> pd.DataFrame:
        """The rows `ids` of the feature table with each embedding block replaced by its components
        `<block>_pc_<j>` (NaN where the view is absent); a block the PCA was not fitted on (absent from
        training) is dropped. One block in memory at a time."""
        positions = table.positions(ids)
        parts = [table.plain(positions)]
        parts += [self._project(block, table.block(cols, positions), parts[0].index)
                  for block, cols in table.blocks.items() if block in self.means]
        return pd.concat(parts, axis=1)

    def save(self, path: str | Path) -> None:
        arrays = {f"{b}/mean": m for b, m in self.means.items()}
        arrays.update({f"{b}/components": c for b, c in self.components.items()})
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingPCA":
        with np.load(path, allow_pickle=False) as saved:
            blocks = {name.rpartition("/")[0] for name in saved.files}
            return cls({b: saved[f"{b}/mean"] for b in blocks}, {b: saved[f"{b}/components"] for b in blocks})
