"""The demo's own home and port (issue 23): after the README's quick tour, `driftloop demo` and
`make demo` must not meet the tour's data in ./.driftloop; a taken --port is refused before any work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftloop.cli.demo import DEFAULT_HOME
from driftloop.cli.main import build_command
from driftloop.demo.run import MARKER, _reset
from driftloop.errors import UsageError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def test_the_default_home_is_the_demos_own_inside_the_platforms() -> None:
    demo = build_command().commands["demo"]  # type: ignore[attr-defined]
    home = next(p for p in demo.params if p.name == "home")
    assert Path(home.default) == DEFAULT_HOME == Path(".driftloop") / "demo"


def test_after_the_quick_tour_the_demo_home_is_usable_and_the_tour_data_stays(tmp_path: Path) -> None:
    tour = tmp_path / ".driftloop"
    (tour / "raw").mkdir(parents=True)
    (tour / "driftloop.db").write_bytes(b"the tour's metadata")
    for _ in range(2):  # the demo after the tour, then again (make demo twice)
        _reset(DEFAULT_HOME.resolve())
        assert (tmp_path / DEFAULT_HOME / MARKER).is_file()
    assert (tour / "driftloop.db").read_bytes() == b"the tour's metadata"
    assert sorted(p.name for p in tour.iterdir()) == ["demo", "driftloop.db", "raw"]


def test_a_home_with_other_data_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="holds data the demo did not make"):
        _reset(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_taken_port_is_one_line_before_any_work(cli, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("demo", "--quick", "--port", str(port))
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert line.startswith(f"error: --port {port} is not free on 127.0.0.1")
    assert not (tmp_path / DEFAULT_HOME).exists()  # nothing was reset or simulated


def test_make_demo_reads_the_demos_home() -> None:
    script = SCRIPT.read_text()
    assert "DEMO_HOME=.driftloop/demo" in script
    assert 'dl demo --home "$DEMO_HOME"' in script
    for reader in ("seen loop history", "seen models history", "seen monitor history"):
        assert reader in script
