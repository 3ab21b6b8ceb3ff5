"""Where the per-image and per-site work of a stage runs: this process and its joblib workers, or Dask."""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager

from joblib import parallel_config

log = logging.getLogger("stages.compute")


@contextmanager
def compute_backend(compute: dict):
    """Where the per-image and per-site work runs (params.yaml's execution section): `local` (this process
    and its joblib workers) or `dask` (joblib's Dask backend on the scheduler at `address`, or on a loopback
    LocalCluster of `workers` processes when it is empty). Yields the Dask client, or None."""
    if compute["backend"] == "local":
        yield None
        return
    if compute["backend"] != "dask":
        raise SystemExit(f"execution.backend must be local or dask, not {compute['backend']!r}")
    from dask.distributed import Client, LocalCluster
    with ExitStack() as stack:
        if compute["address"]:
            client = stack.enter_context(Client(compute["address"]))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=compute["workers"], threads_per_worker=compute["threads_per_worker"], processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0"))
            client = stack.enter_context(Client(cluster))
        log.info("compute: Dask scheduler %s with %d workers, dashboard %s", client.scheduler.address,
                 len(client.scheduler_info()["workers"]), client.dashboard_link)
        stack.enter_context(parallel_config(backend="dask"))
        yield client
