"""What to say when an MLflow server refuses a request for want of a login (its basic-auth app).

Apart from the MLflow adapters so that the read-only registry readers, which never import MLflow, say
exactly what the MLflow client path says.
"""

from __future__ import annotations

__all__ = ["login_refused"]


def login_refused(message: str, uri: str) -> str | None:
    """What to say when MLflow refused a request for want of a login (basic auth): None otherwise.
    ``message`` is MLflow's error text, which names the HTTP status as ``error code NNN``."""
    if "error code 401" in message:
        return (
            f"MLflow at {uri} needs a login: set tracking.username and tracking.password "
            "(DRIFTLOOP_TRACKING__PASSWORD)"
        )
    if "error code 403" in message:
        return f"MLflow at {uri} does not permit this to tracking.username (403)"
    return None
