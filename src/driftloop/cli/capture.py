"""``driftloop capture``: the capture store's landed segments."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from driftloop.cli._state import state

app = typer.Typer(help="Capture store: compact landed segments into Parquet.", no_args_is_help=True)


@app.command("compact")
def compact_cmd(ctx: typer.Context) -> None:
    """Compact every capture segment the services have landed into the Parquet captures.

    Services land their write-ahead-log segments as they are and compact them once idle; monitoring
    compacts before it reads. Run this to have everything in Parquet now (for DuckDB, Spark, …).
    Idempotent, and safe while services run.
    """
    from driftloop.capture import compact
    from driftloop.storage import open_store

    st = state(ctx)
    store = open_store(st.settings.storage_root, st.settings.storage.s3)
    with Progress(
        TextColumn("compacting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("segments"),
        console=st.err,
        transient=True,
    ) as progress:
        task = progress.add_task("compact", total=None)
        done = compact(store, progress=lambda n, total: progress.update(task, completed=n, total=total))
    if done.segments:
        st.out.print(
            f"compacted {done.segments} segment(s): {done.records} record(s) into {done.objects} "
            f"Parquet object(s) under {store.root}/captures/"
        )
    elif not done.quarantined:
        st.out.print(f"nothing to compact under {store.root}/captures/")
    if done.quarantined:
        st.out.print(
            f"{done.quarantined} object(s) were not capture segments: moved to "
            f"{store.root}/captures/_quarantine/ with a .reason.txt each"
        )
