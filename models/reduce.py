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
from sklearn.decomposition import PCA

from data.io import atomic_path

BLOCK_RE = re.compile(r"^(?P<block>.+)_emb_(?P<k>\d+)$")  # e.g. embeddings__frame_emb_17


def embedding_blocks(columns: pd.Index) -> dict[str, list[str]]:
    """Embedding columns grouped by block name, each in dimension order."""
    blocks: dict[str, list[tuple[int, str]]] = {}
    for c in columns:
        if m := BLOCK_RE.match(str(c)):
            blocks.setdefault(m["block"], []).append((int(m["k"]), c))
    return {b: [c for _, c in sorted(cols)] for b, cols in blocks.items()}


class EmbeddingPCA:
    def __init__(self, means: dict[str, np.ndarray], components: dict[str, np.ndarray]) -> None:
        self.means, self.components = means, components

    @classmethod
    def fit(cls, features: pd.DataFrame, n_components: int, seed: int) -> "EmbeddingPCA":
        """One PCA per block, on the rows where that block is present (a view can be absent: no crop)."""
        means, components = {}, {}
        for block, cols in embedding_blocks(features.columns).items():
            x = features[cols].to_numpy(np.float32)
            x = x[~np.isnan(x).any(axis=1)]
            k = min(n_components, *x.shape)
            if k == 0:
                continue
            pca = PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed).fit(x)
            means[block], components[block] = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        return cls(means, components)

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        """Embedding blocks replaced by their components `<block>_pc_<j>` (NaN where the view is absent);
        a block the PCA was not fitted on (absent from training) is dropped."""
        blocks = embedding_blocks(features.columns)
        parts = [features.drop(columns=[c for cols in blocks.values() for c in cols])]
        for block, cols in blocks.items():
            if block in self.means:
                x = features[cols].to_numpy(np.float32) - self.means[block]
                parts.append(pd.DataFrame(x @ self.components[block].T, index=features.index,
                                          columns=[f"{block}_pc_{j}" for j in range(len(self.components[block]))]))
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
