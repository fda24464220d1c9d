"""A window's statistics counted with Ray Data: ``monitoring.engine = "ray"`` (``driftloop[ray]``).

The window's captured Parquet objects (the same date partitions :func:`~driftloop.monitoring.window.
iter_captures` lists) are read by Ray Data straight from the object store (S3 or a directory every node
sees), in blocks of at most ``monitoring.chunk_rows`` rows. Each block is cut to the window, decoded as
the in-process path decodes a chunk, and counted into a fresh copy of the pass's
:class:`~driftloop.monitoring.tally.WindowTally` on the cluster; the driver merges the block tallies.
The accumulators are the in-process ones, so a pass gives the same verdicts on either engine.

What stays in this process: listing the partitions, the label book, the service's refusals, and the
judgement of the merged counts, all small.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.monitoring.window import COLUMNS, as_utc, chunk_of, in_window, partition_keys
from driftloop.runtime.ray_cluster import connected

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import pyarrow as pa

    from driftloop.monitoring.tally import WindowTally
    from driftloop.settings import ColumnSpec
    from driftloop.storage import ObjectStore

__all__ = ["tally_on_ray"]

_FEATURE = 'monitoring.engine = "ray"'


def tally_on_ray(
    store: ObjectStore,
    tally: WindowTally,
    *,
    address: str,
    model: str,
    start: datetime,
    end: datetime,
    chunk_rows: int,
    fields: Sequence[ColumnSpec] = (),
    version: int | None = None,
) -> WindowTally:
    """``tally`` (empty) with the predictions of ``model`` captured in ``[start, end)`` counted into it
    by Ray Data on the cluster at ``address``; arguments as for ``iter_captures``. Raises
    :class:`ConfigError` without Ray or a cluster, and the store's errors."""
    start, end = as_utc(start), as_utc(end)
    keys = partition_keys(store, f"captures/model={model}", start, end)
    if not keys:
        return tally
    filesystem, base = store.arrow_filesystem()
    with connected(address, _FEATURE):
        import ray.data

        # Progress bars and per-dataset progress lines are for notebooks: a pass prints its report.
        ray.data.DataContext.get_current().enable_progress_bars = False
        paths = [f"{base}/{key}" for key in keys]
        dataset = ray.data.read_parquet(paths, filesystem=filesystem).select_columns(list(COLUMNS))
        counted = dataset.map_batches(
            _count_block,
            batch_format="pyarrow",
            batch_size=chunk_rows,
            fn_kwargs={
                "empty": pickle.dumps(tally),
                "window": (start, end, version),
                "fields": tuple(fields),
            },
        )
        for batch in counted.iter_batches(batch_format="numpy", batch_size=None):
            for blob in batch["tally"]:
                tally.merge(pickle.loads(blob))
    return tally


def _count_block(
    table: pa.Table,
    *,
    empty: bytes,
    window: tuple[datetime, datetime, int | None],
    fields: tuple[ColumnSpec, ...],
) -> dict[str, Any]:
    """Runs on the cluster: one block's rows in the window, counted into a copy of the empty tally."""
    tally: WindowTally = pickle.loads(empty)
    kept = in_window(table, *window)
    if kept.num_rows:
        tally.update(chunk_of(kept, fields))
    blob = np.empty(1, dtype=object)
    blob[0] = pickle.dumps(tally)
    return {"tally": blob}
