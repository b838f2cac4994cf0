"""Whole datasets on dask.distributed: one task per site, on your cores or on any cluster.

- ``get_client()``: the scheduler at ``address`` (or ``$DASK_SCHEDULER_ADDRESS``) when given,
  else a ``LocalCluster`` with one single-threaded worker process per core. Workers get
  ``OMP/MKL/OPENBLAS_NUM_THREADS=1`` and torch one thread, so N workers use N cores instead of
  N x N threads fighting over them.
- ``run(items, fn)``: ``fn(item)`` for every item on the cluster, results in order, with a
  progress bar; the dashboard link is printed (with ``bokeh`` installed).
- ``map_sites(index, key, fn, out_dir)``: ``fn(row) -> DataFrame`` for every site, each site's
  table written as Parquet the moment it is done (``out_dir/parts/<plate>/<key>.parquet``), then
  one Parquet file per plate (``out_dir/<plate>.parquet``). Sites already done are skipped, so
  an interrupted run resumes where it stopped. Workers write the files themselves: on a
  cluster, ``out_dir`` must be on a file system every worker sees.

>>> cells = map_sites(index, "key", partial(measure_row, ...), "data/profiles/cpjump1")
See ``docs/scaling.md`` for a whole CPJUMP1 batch or RxRx1 on a cluster, with costs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SiteError(RuntimeError):
    """A site's task failed on the cluster; the message names the site and the cause."""


def get_client(address: str | None = None, n_workers: int | None = None, verbose: bool = True):
    """A ``distributed.Client``: to ``address`` / ``$DASK_SCHEDULER_ADDRESS`` when set, else to
    a new ``LocalCluster`` of ``n_workers`` single-threaded processes (default: all cores).
    Close it with ``client.close()`` (and ``client.cluster.close()`` for a local one)."""
    import dask
    from distributed import Client, LocalCluster

    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        client = Client(address)
    else:
        n_workers = n_workers or os.cpu_count() or 1
        try:
            import bokeh  # noqa: F401  (the dashboard needs it)

            dashboard = ":0"
        except ImportError:
            dashboard = None
        env = {v: "1" for v in THREAD_VARS}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=dashboard,
                silence_logs=40,  # errors only
            )
        client = Client(cluster)
        client.run(_one_torch_thread)
    if verbose:
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        link = client.dashboard_link if _has_dashboard(client) else "none (pip install bokeh)"
        print(f"dask: {n} worker(s) at {client.scheduler.address}; dashboard: {link}")
    return client


def close(client) -> None:
    """Close ``client`` and, when ``get_client`` started it, its local cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def _has_dashboard(client) -> bool:
    try:
        return bool(client.scheduler_info().get("services", {}).get("dashboard"))
    except Exception:  # noqa: BLE001 -- an unknown scheduler: say nothing rather than fail
        return False


def _one_torch_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def run(
    items: Sequence,
    fn: Callable,
    client=None,
    address: str | None = None,
    n_workers: int | None = None,
    desc: str = "tasks",
    progress: bool = True,
) -> list:
    """``[fn(item) for item in items]`` on the cluster, in order. A failed task raises
    ``SiteError`` naming the item. Uses ``client`` when given, else makes one (and closes it)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    if not len(items):
        return []
    own = client is None
    client = client or get_client(address, n_workers)
    try:
        futures = client.map(fn, list(items), pure=False)
        position = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        bar = tqdm(total=len(futures), desc=desc, disable=not progress, mininterval=2.0)
        for future in as_completed(futures):
            i = position[future.key]
            if future.status == "error":
                error = future.exception()
                for f in futures:
                    f.cancel()
                raise SiteError(f"{desc}: {_name(items[i])} failed: {error!r}") from error
            results[i] = future.result()
            bar.update()
        bar.close()
        return results
    finally:
        if own:
            close(client)


def _name(item) -> str:
    if isinstance(item, tuple) and isinstance(item[-1], str):  # map_sites: (row, part file)
        return f"site {Path(item[-1]).stem} (plate {Path(item[-1]).parent.name})"
    text = str(dict(item) if isinstance(item, pd.Series) else item)
    return text if len(text) < 200 else text[:200] + "..."


class _SiteTask:
    """One site: ``fn(row)`` written to ``dest`` as Parquet (temporary name, then renamed)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, job: tuple[dict, str]) -> int:
        row, dest = job
        table = self.fn(pd.Series(row))
        dest_path = Path(dest)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest_path.with_suffix(f".tmp{os.getpid()}")
        table.to_parquet(tmp, index=False)
        os.replace(tmp, dest_path)
        return len(table)


def site_part(out_dir: str | os.PathLike, plate: str, key: str) -> Path:
    """Where one site's table goes (plate and key checked by ``paths.safe_key``: a ``/`` in a
    key would put the part where the plate table never reads it)."""
    from cellutils.paths import safe_key

    plate, key = safe_key(plate, "plate", "the index"), safe_key(key, "key", "the index")
    return Path(out_dir) / "parts" / plate / f"{key}.parquet"


def map_sites(
    index: pd.DataFrame,
    key: str,
    fn: Callable[[pd.Series], pd.DataFrame],
    out_dir: str | os.PathLike,
    plate: str = "Metadata_Plate",
    client=None,
    address: str | None = None,
    n_workers: int | None = None,
    desc: str = "sites",
    progress: bool = True,
) -> pd.DataFrame:
    """``fn(row)`` for every row of ``index`` on the cluster, resumable per site, written per
    plate as Parquet; returns the tables of ``index``'s sites, in ``index``'s order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Rows whose part file exists are skipped; a plate file is rebuilt when a part is newer."""
    out_dir = Path(out_dir).expanduser()
    if index[key].duplicated().any():
        dup = index[key][index[key].duplicated()].iloc[0]
        raise ValueError(f"{key} is not unique (e.g. {dup!r}); one site per key is needed")
    plates = index[plate].astype(str) if plate in index else pd.Series("all", index=index.index)
    dests = [site_part(out_dir, p, k) for p, k in zip(plates, index[key].astype(str), strict=True)]
    todo = [
        (dict(row), str(d))
        for (_, row), d in zip(index.iterrows(), dests, strict=True)
        if not d.exists()
    ]
    if todo:
        print(f"{desc}: {len(todo)} of {len(index)} sites to do ({len(index) - len(todo)} done)")
        run(todo, _SiteTask(fn), client, address, n_workers, desc, progress)
    tables = []
    for p in plates.unique():
        tables.append(_plate_table(out_dir, p))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    keys = set(index[key].astype(str))
    if "_site" in table:
        table = table[table["_site"].isin(keys)].copy()
        order = {k: i for i, k in enumerate(index[key].astype(str))}
        table = table.sort_values("_site", key=lambda s: s.map(order), kind="stable")
        table = table.drop(columns="_site").reset_index(drop=True)
    return table


def _plate_table(out_dir: Path, plate: str) -> pd.DataFrame:
    """The plate's Parquet file, rebuilt from its site parts when any part is newer."""
    parts = sorted((out_dir / "parts" / plate).glob("*.parquet"))
    dest = out_dir / f"{plate}.parquet"
    if dest.exists() and all(p.stat().st_mtime <= dest.stat().st_mtime for p in parts):
        return pd.read_parquet(dest)
    table = pd.concat([pd.read_parquet(p).assign(_site=p.stem) for p in parts], ignore_index=True)
    tmp = dest.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, dest)
    return table
