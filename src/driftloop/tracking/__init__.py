"""MLflow tracking behind driftloop types: runs, parameters, metrics, artifacts, models, datasets."""

from driftloop.tracking.runs import RunOrigin
from driftloop.tracking.tracker import Tracker, configure_mlflow, login_refused

__all__ = ["RunOrigin", "Tracker", "configure_mlflow", "login_refused"]
