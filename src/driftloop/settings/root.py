"""The effective configuration: every section under one typed object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from driftloop.settings._section import Section
from driftloop.settings.data import DataSettings, SimulateSettings
from driftloop.settings.loop import MonitoringSettings, PolicySettings, ScheduleSettings
from driftloop.settings.pipeline import PipelineSettings, RegistrySettings, TrackingSettings, TrainingSettings
from driftloop.settings.ray import RaySettings
from driftloop.settings.serving import AuthSettings, CaptureSettings, ServingSettings
from driftloop.settings.storage import DatabaseSettings, StorageSettings

__all__ = ["ENV_PREFIX", "NESTED", "LoggingSettings", "Settings"]

ENV_PREFIX = "DRIFTLOOP_"
# Nested keys in environment variable names: DRIFTLOOP_STORAGE__S3__ENDPOINT_URL.
NESTED = "__"


class LoggingSettings(Section):
    """driftloop's own log lines (``driftloop.logs``): the services' level; one-shot commands log warnings."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class Settings(BaseSettings):
    """The effective configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    home: Path = Path(".driftloop")
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    data: DataSettings = DataSettings()
    simulate: SimulateSettings = SimulateSettings()
    pipeline: PipelineSettings = PipelineSettings()
    training: TrainingSettings = TrainingSettings()
    tracking: TrackingSettings = TrackingSettings()
    registry: RegistrySettings = RegistrySettings()
    policy: PolicySettings = PolicySettings()
    serving: ServingSettings = ServingSettings()
    capture: CaptureSettings = CaptureSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()
    ray: RaySettings = RaySettings()

    # Where the file came from (None: defaults and environment only). Not a configuration key.
    config_file: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must override it, so it comes first.
        return (env_settings, init_settings)

    @property
    def storage_root(self) -> str:
        """The object-store root URI: ``s3://…`` or an absolute local path."""
        return self.storage.root or str(self.home)

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI."""
        return self.tracking.uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def capture_wal_dir(self) -> Path:
        """The capture store's local write-ahead log directory."""
        return self.capture.wal_dir or self.home / "capture" / "wal"

    @property
    def artifact_root(self) -> str:
        """Where new MLflow experiments store artifacts."""
        return self.tracking.artifact_root or f"{self.storage_root.rstrip('/')}/mlflow"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the metadata database."""
        url = self.database.url.get_secret_value()
        return url or f"sqlite:///{self.home / 'driftloop.db'}"
