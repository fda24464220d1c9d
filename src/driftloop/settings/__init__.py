"""The one typed configuration.

Built once per process by :func:`load_settings` and passed down as an argument; nothing reads the
environment at import time. Sources, highest priority first:

1. environment variables ``DRIFTLOOP_<SECTION>__<KEY>`` (nested keys joined by ``__``),
2. the TOML file (``--config PATH``, else ``./driftloop.toml`` when it exists),
3. defaults, which run everything embedded under ``./.driftloop/``.

Relative paths are resolved against the directory of the configuration file, or the working directory
when there is no file. An unknown key or a bad value raises :class:`~driftloop.errors.ConfigError` naming
the key both as it is written in TOML and as an environment variable.

The package holds one module per group of sections (``storage``, ``data``, ``pipeline``, ``serving``,
``loop``), the root :class:`Settings` and the loader; the names below are its public API, imported from
``driftloop.settings`` (decision 0054).
"""

from driftloop.settings.data import PLANT_COLUMNS, ColumnSpec, DataSettings, SimulateSettings
from driftloop.settings.loader import CONFIG_FILENAME, TOKEN_ENV, load_settings, masked_dump
from driftloop.settings.loop import (
    FeatureDriftTest,
    MonitoringSettings,
    NumericDriftMethod,
    PolicySettings,
    ScheduleSettings,
)
from driftloop.settings.pipeline import (
    ContainerRunnerSettings,
    KubernetesRunnerSettings,
    LocalRunnerSettings,
    PipelineSettings,
    RayRunnerSettings,
    RegistrySettings,
    TrackingSettings,
    TrainingSettings,
)
from driftloop.settings.ray import RaySettings
from driftloop.settings.root import ENV_PREFIX, LoggingSettings, Settings
from driftloop.settings.serving import AuthRole, AuthSettings, CaptureSettings, RateLimit, ServingSettings
from driftloop.settings.storage import DatabaseSettings, S3Settings, StorageSettings

__all__ = [
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "PLANT_COLUMNS",
    "TOKEN_ENV",
    "AuthRole",
    "AuthSettings",
    "CaptureSettings",
    "ColumnSpec",
    "ContainerRunnerSettings",
    "DataSettings",
    "DatabaseSettings",
    "FeatureDriftTest",
    "KubernetesRunnerSettings",
    "LocalRunnerSettings",
    "LoggingSettings",
    "MonitoringSettings",
    "NumericDriftMethod",
    "PipelineSettings",
    "PolicySettings",
    "RateLimit",
    "RayRunnerSettings",
    "RaySettings",
    "RegistrySettings",
    "S3Settings",
    "ScheduleSettings",
    "ServingSettings",
    "Settings",
    "SimulateSettings",
    "StorageSettings",
    "TrackingSettings",
    "TrainingSettings",
    "load_settings",
    "masked_dump",
]
