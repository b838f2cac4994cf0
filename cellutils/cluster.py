"""Whole datasets on dask.distributed: one task per site, on your cores or on any cluster.

- ``get_client()``: the scheduler at ``address`` (or ``$DASK_SCHEDULER_ADDRESS``) when given,
  else a ``LocalCluster`` with one single-threaded worker process per core. Workers get
  ``OMP/MKL/OPENBLAS_NUM_THREADS=1`` and torch one thread, so N workers use N cores instead of
  N x N threads fighting over them.
- ``run(items, fn)``: ``fn(item)`` for every item on the cluster, results in order, with a
  progress bar; the dashboard link is printed (with ``bokeh`` installed).
- ``map_sites(index, key, fn, out_dir)``: ``fn(row) -> DataFrame`` for every site, each site's
  table written as Parquet the moment it is done (``out_dir/parts/<plate>/<key>.parquet``), then
  one Parquet file per plate (``out_dir/<plate>.parquet``). Sites already done *by the same
  function, settings and inputs* are skipped (the key is in each part's Parquet metadata), so
  an interrupted run resumes where it stopped and a changed plate map or function recomputes.
  Failed tasks are retried. ``stream=True`` returns the plates one at a time (``PlateTables``)
  instead of one table. Workers write the files themselves: on a cluster, ``out_dir`` must be
  on a file system every worker sees.

>>> cells = map_sites(index, "key", partial(measure_row, ...), "data/profiles/cpjump1")
See ``docs/scaling.md`` for a whole CPJUMP1 batch or RxRx1 on a cluster, with costs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from cellutils import keys

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


RETRIES = 2  # a task that raises is run again this many times (a flaky disk, a lost worker)


def run(
    items: Sequence,
    fn: Callable,
    client=None,
    address: str | None = None,
    n_workers: int | None = None,
    desc: str = "tasks",
    progress: bool = True,
    retries: int = RETRIES,
) -> list:
    """``[fn(item) for item in items]`` on the cluster, in order. A task that raises is retried
    ``retries`` times (transient failures: a network file system, a worker lost); one that
    still fails raises ``SiteError`` naming the item. Uses ``client`` when given, else makes one
    (and closes it)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    if not len(items):
        return []
    own = client is None
    client = client or get_client(address, n_workers)
    try:
        futures = client.map(fn, list(items), pure=False, retries=retries)
        position = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        bar = tqdm(total=len(futures), desc=desc, disable=not progress, mininterval=2.0)
        for future in as_completed(futures):
            i = position[future.key]
            if future.status == "error":
                error = future.exception()
                for f in futures:
                    f.cancel()
                raise SiteError(
                    f"{desc}: {_name(items[i])} failed {retries + 1} time(s): {error!r}"
                ) from error
            results[i] = future.result()
            bar.update()
        bar.close()
        return results
    finally:
        if own:
            close(client)


def _name(item) -> str:
    if isinstance(item, tuple) and isinstance(item[1], str):  # map_sites: (row, part, key)
        return f"site {Path(item[1]).stem} (plate {Path(item[1]).parent.name})"
    text = str(dict(item) if isinstance(item, pd.Series) else item)
    return text if len(text) < 200 else text[:200] + "..."


KEY_FIELD = b"cellutils.key"  # Parquet schema metadata: what made a site's part


class _SiteTask:
    """One site: ``fn(row)`` written to ``dest`` as Parquet (temporary name, then renamed), with
    the key of what made it in the file's schema metadata."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, job: tuple[dict, str, dict]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        row, dest, key = job
        table = pa.Table.from_pandas(self.fn(pd.Series(row)), preserve_index=False)
        meta = {**(table.schema.metadata or {}), KEY_FIELD: json.dumps(key).encode()}
        dest_path = Path(dest)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest_path.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        os.replace(tmp, dest_path)
        return table.num_rows


def part_key(path: str | os.PathLike) -> dict | None:
    """The key stored in a site's part (None: no part, or one written before keys)."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(KEY_FIELD)
    except (OSError, ValueError):  # missing, or not Parquet (an interrupted copy)
        return None
    return json.loads(raw) if raw else None


def site_part(out_dir: str | os.PathLike, plate: str, key: str) -> Path:
    """Where one site's table goes (plate and key checked by ``paths.safe_key``: a ``/`` in a
    key would put the part where the plate table never reads it)."""
    from cellutils.paths import safe_key

    plate, key = safe_key(plate, "plate", "the index"), safe_key(key, "key", "the index")
    return Path(out_dir) / "parts" / plate / f"{key}.parquet"


def site_key(fn: Callable, row: dict) -> dict:
    """What makes a site's table: ``fn`` (name, module source, bound settings), the row's
    values (its labels come from the plate map: a fixed plate map changes them) and the
    identity of every file the row names (``path_*`` columns: size and mtime)."""
    files = [v for k, v in row.items() if k.startswith("path_") and isinstance(v, (str, Path))]
    return keys.make_key(fn, files=files, values=row)


class PlateTables:
    """The per-plate tables of a ``map_sites`` run, read one plate at a time (a whole dataset's
    cells need not fit in memory). Iterating yields each plate's rows of the index's sites, in
    the index's order; ``files`` are the Parquet files, one per plate (for pyarrow/dask);
    ``concat()`` is the whole table, for data that fits."""

    def __init__(self, files: list[Path], order: dict[str, int]):
        self.files, self.order = files, order

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        for f in self.files:
            yield self.read(f)

    def read(self, path: Path) -> pd.DataFrame:
        """One plate's table: the index's sites only, in its order, without ``_site``."""
        table = pd.read_parquet(path)
        table = table[table["_site"].isin(self.order.keys())]
        table = table.sort_values("_site", key=lambda s: s.map(self.order), kind="stable")
        return table.drop(columns="_site").reset_index(drop=True)

    def concat(self) -> pd.DataFrame:
        tables = list(self)
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


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
    stream: bool = False,
    retries: int = RETRIES,
) -> pd.DataFrame | PlateTables:
    """``fn(row)`` for every row of ``index`` on the cluster, resumable per site, written per
    plate as Parquet; returns the tables of ``index``'s sites, in ``index``'s order: one
    DataFrame, or with ``stream=True`` a ``PlateTables`` read one plate at a time.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    A site's part is reused only when its stored key (``site_key``: the function, its settings,
    the row and its files) matches; others are recomputed, and the run says how many and why.
    Failed tasks are retried ``retries`` times. A plate file is rebuilt, part by part (one
    site's table in memory at a time), when its parts changed."""
    out_dir = Path(out_dir).expanduser()
    if index[key].duplicated().any():
        dup = index[key][index[key].duplicated()].iloc[0]
        raise ValueError(f"{key} is not unique (e.g. {dup!r}); one site per key is needed")
    plates = index[plate].astype(str) if plate in index else pd.Series("all", index=index.index)
    dests = [site_part(out_dir, p, k) for p, k in zip(plates, index[key].astype(str), strict=True)]
    todo, stale = [], keys.Reporter(desc)
    for (_, row), d in zip(index.iterrows(), dests, strict=True):
        want = site_key(fn, dict(row))
        if d.exists():
            reason = keys.mismatch(part_key(d), want)
            if reason is None:
                continue
            stale.add(f"site {d.stem}", reason)
        todo.append((dict(row), str(d), want))
    stale.say()
    if todo:
        print(f"{desc}: {len(todo)} of {len(index)} sites to do ({len(index) - len(todo)} done)")
        run(todo, _SiteTask(fn), client, address, n_workers, desc, progress, retries)
    order = {k: i for i, k in enumerate(index[key].astype(str))}
    tables = PlateTables([_plate_file(out_dir, p) for p in plates.unique()], order)
    return tables if stream else tables.concat()


def _plate_file(out_dir: Path, plate: str) -> Path:
    """The plate's Parquet file (one row group per site, a ``_site`` column naming it), rebuilt
    from its site parts when their names, sizes or times changed; written part by part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((out_dir / "parts" / plate).glob("*.parquet"))
    dest = out_dir / f"{plate}.parquet"
    ids = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in parts]
    stamp = json.dumps(ids).encode()
    if dest.exists() and (pq.read_schema(dest).metadata or {}).get(KEY_FIELD) == stamp:
        return dest
    schema = pa.unify_schemas(
        [pq.read_schema(p).remove_metadata() for p in parts], promote_options="permissive"
    )
    schema = schema.append(pa.field("_site", pa.string())).with_metadata({KEY_FIELD: stamp})
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    with pq.ParquetWriter(tmp, schema) as writer:
        for p in parts:
            table = pq.read_table(p).replace_schema_metadata(None)
            table = table.append_column("_site", pa.array([p.stem] * table.num_rows, pa.string()))
            writer.write_table(_conform(table, schema))
    os.replace(tmp, dest)
    return dest


def _conform(table, schema):
    """``table`` with ``schema``'s columns in its order (missing ones null) and types."""
    import pyarrow as pa

    cols = [
        table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)
