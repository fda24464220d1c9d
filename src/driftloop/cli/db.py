"""``driftloop db``: the metadata database's schema."""

from __future__ import annotations

import typer

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import state

app = typer.Typer(help="Metadata database: migrate and inspect the schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (idempotent; safe to run from several processes)."""
    from driftloop.storage.metadata import Database

    st = state(ctx)
    db = Database(st.settings.database_url)
    try:
        before = db.current_revision()
        db.upgrade()
        after = db.current_revision()
    finally:
        db.dispose()
    what = "already at" if before == after else f"upgraded {before or 'empty'} →"
    st.out.print(f"metadata database {what} revision {after} ({db.dialect})")


@app.command("status")
def status(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Show the database URL (password masked), its schema revision and the newest known one."""
    from driftloop.storage.metadata import Database

    st = state(ctx)
    db = Database(st.settings.database_url)
    try:
        current = db.current_revision()
    finally:
        db.dispose()
    head = Database.head_revision()
    url = db.engine.url.render_as_string(hide_password=True)
    if as_json:
        print_json(
            {"url": url, "dialect": db.dialect, "revision": current, "head": head, "pending": current != head}
        )
        return
    st.out.print(f"url:      {url}")
    st.out.print(f"revision: {current or 'none (run: driftloop db upgrade)'}")
    st.out.print(f"head:     {head}{'' if current == head else '  (pending migrations)'}")
