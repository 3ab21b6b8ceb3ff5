"""One BLAS thread for the model stages: the same numbers whatever the machine's thread settings.

OpenBLAS splits a matrix product's sums by its thread count, so the PCA of the embedding views fitted with 1
and with 2 BLAS threads differed in the last bits (2e-7 in the components) and, downstream, in the model a
1/100-scale rehearsal chose; which count a process gets depends on its environment, not on params. The model
stages' matrix products (PCA, the proposers' LDA, the linear probes) therefore run on one thread; LightGBM's
own threads (execution.threads) do not change its results.
"""
from __future__ import annotations

from contextlib import contextmanager

from threadpoolctl import threadpool_limits


@contextmanager
def one_blas_thread():
    """numpy's, scipy's and scikit-learn's BLAS on one thread inside the block."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
