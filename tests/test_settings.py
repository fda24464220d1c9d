from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.core.transform import DERIVED
from driftloop.errors import ConfigError
from driftloop.settings import load_settings, masked_dump
from driftloop.simulate import LABEL_COLUMNS, RAW_COLUMNS


def test_defaults_run_embedded_under_dot_driftloop(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path)
    assert settings.config_file is None
    assert settings.home == tmp_path / ".driftloop"
    assert settings.storage_root == str(tmp_path / ".driftloop")
    assert settings.database_url == f"sqlite:///{tmp_path / '.driftloop' / 'driftloop.db'}"


def test_file_in_working_directory_is_found_and_relative_paths_follow_it(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text(
        'home = "state"\n[storage]\nroot = "objects"\n[simulate]\nmachines = 7\n'
    )
    settings = load_settings(cwd=tmp_path)
    assert settings.config_file == tmp_path / "driftloop.toml"
    assert settings.home == tmp_path / "state"
    assert settings.storage_root == str(tmp_path / "objects")
    assert settings.simulate.machines == 7


def test_explicit_config_resolves_paths_against_its_own_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "prod.toml").write_text('[storage]\nroot = "data"\n')
    settings = load_settings(Path("conf/prod.toml"), cwd=tmp_path)
    assert settings.storage_root == str(conf_dir / "data")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "driftloop.toml").write_text("[simulate]\nmachines = 7\nseed = 3\n")
    monkeypatch.setenv("DRIFTLOOP_SIMULATE__MACHINES", "11")
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__ENDPOINT_URL", "http://minio:9000")
    settings = load_settings(cwd=tmp_path)
    assert settings.simulate.machines == 11
    assert settings.simulate.seed == 3  # untouched keys keep the file's value
    assert settings.storage.s3.endpoint_url == "http://minio:9000"


def test_s3_root_is_kept_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_STORAGE__ROOT", "s3://bucket/prefix")
    assert load_settings(cwd=tmp_path).storage_root == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("[storage]\nbogus = 1\n", ["storage.bogus", "DRIFTLOOP_STORAGE__BOGUS", "unknown key"]),
        ("[nosuchsection]\nx = 1\n", ["nosuchsection", "unknown key"]),
        ('[simulate]\nmachines = "many"\n', ["simulate.machines", "DRIFTLOOP_SIMULATE__MACHINES", "integer"]),
        ("[simulate]\nmachines = 0\n", ["simulate.machines", "greater than or equal to 1"]),
        ('[storage.s3]\naddressing_style = "sideways"\n', ["storage.s3.addressing_style"]),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, toml: str, names: list[str]) -> None:
    (tmp_path / "driftloop.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path)
    message = info.value.headline
    assert "\n" not in message
    for name in names:
        assert name in message


def test_bad_environment_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_SIMULATE__SEED", "-1")
    with pytest.raises(ConfigError, match="DRIFTLOOP_SIMULATE__SEED"):
        load_settings(cwd=tmp_path)


def test_unknown_environment_section_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_STROAGE__ROOT", "/tmp/x")
    with pytest.raises(ConfigError, match="DRIFTLOOP_STROAGE__ROOT"):
        load_settings(cwd=tmp_path)


def test_unknown_environment_key_in_known_section_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_STORAGE__ROOTT", "/tmp/x")
    with pytest.raises(ConfigError, match=r"storage\.roott"):
        load_settings(cwd=tmp_path)


def test_unparsable_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[storage\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_settings(cwd=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path("missing.toml"), cwd=tmp_path)


def test_masked_dump_hides_secrets_and_url_passwords(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text(
        '[database]\nurl = "postgresql+psycopg://app:hunter2@db:5432/meta"\n'
        '[storage.s3]\naccess_key_id = "AKIA"\nsecret_access_key = "topsecret"\n'
    )
    settings = load_settings(cwd=tmp_path)
    dumped = repr(masked_dump(settings))
    assert "hunter2" not in dumped
    assert "topsecret" not in dumped
    assert "postgresql+psycopg://app:***@db:5432/meta" in dumped
    # The real values are still available to the code that needs them.
    assert settings.database_url.endswith("app:hunter2@db:5432/meta")


def test_shipped_defaults_are_the_simulated_plants_own_schema(tmp_path: Path) -> None:
    # Zero configuration runs the plant: the defaults must name exactly what the simulator writes.
    settings = load_settings(cwd=tmp_path)
    names = tuple(column.name for column in settings.data.columns)
    assert names == RAW_COLUMNS
    assert settings.data.target in LABEL_COLUMNS
    assert set(settings.data.derived_features) <= set(DERIVED)
    assert set(settings.monitoring.features) <= set(names)
    assert settings.registry.model_name == "plant-failure"
