"""The prediction-id secret: configured for a fleet, else generated once per home and shared by every
process of that home (workers starting together, restarts)."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from driftloop.errors import ConfigError
from driftloop.serving.id_keys import KEY_FILE, prediction_id_keys
from driftloop.serving.stamps import IdKeys, PredictionIds
from driftloop.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path


def _settings(tmp_path: Path, serving: str = ""):  # type: ignore[no-untyped-def]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "driftloop.toml").write_text(f'home = "home"\n[serving]\n{serving}')
    return load_settings(cwd=tmp_path)


def test_without_a_secret_a_key_is_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = PredictionIds(prediction_id_keys(settings))
    issued = first.take(3)
    key = settings.home / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    restarted = PredictionIds(prediction_id_keys(settings))  # a new process reads the same file
    assert all(restarted.known(i) for i in issued)
    assert [p.name for p in key.parent.iterdir()] == [key.name]  # no candidate left behind


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    pipes = []
    for _ in range(6):  # as `driftloop serve --workers 6` starts them
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, PredictionIds(prediction_id_keys(settings)).take(1)[0].encode())
            os._exit(0)
        os.close(write)
        pipes.append((pid, read))
    issued = []
    for pid, read in pipes:
        issued.append(os.read(read, 64).decode())
        os.close(read)
        os.waitpid(pid, 0)
    keys = prediction_id_keys(settings)
    assert len(issued) == 6
    assert all(keys.known(i) for i in issued)


def test_a_configured_secret_is_shared_by_hosts_and_rotation_keeps_old_ids(tmp_path: Path) -> None:
    secret = "a secret the whole fleet shares"
    host_a = _settings(tmp_path / "a", f'id_secret = "{secret}"\n')
    host_b = _settings(tmp_path / "b", f'id_secret = "{secret}"\n')
    issued = PredictionIds(prediction_id_keys(host_a)).take(2)
    assert all(prediction_id_keys(host_b).known(i) for i in issued)
    assert not (host_a.home / KEY_FILE).exists()  # nothing generated when the secret is configured
    rotated = _settings(
        tmp_path / "c", f'id_secret = "the next secret, rotated in"\nid_previous_secrets = ["{secret}"]\n'
    )
    assert all(prediction_id_keys(rotated).known(i) for i in issued)
    assert not any(IdKeys([b"the next secret, rotated in"]).known(i) for i in issued)


def test_a_damaged_key_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key = settings.home / KEY_FILE
    key.parent.mkdir(parents=True)
    key.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"prediction-id key .* is not 64 hex digits"):
        prediction_id_keys(settings)


def test_short_secrets_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="id_secret: a secret needs at least 16 characters"):
        _settings(tmp_path, 'id_secret = "short"\n')
