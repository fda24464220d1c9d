"""The secret prediction ids are tagged with: configured for a fleet, or generated once per home.

``serving.id_secret`` (with ``serving.id_previous_secrets`` still accepted) is what replicas on several
hosts must share. Without it the key is generated on first use into ``<home>/serving/prediction-id.key``
(mode 0600), which the workers of ``driftloop serve --workers N``, ``driftloop up``, the demo and every
restart on that host then share, so an id stays recognised after a restart (decision 0041).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING

from driftloop.errors import ConfigError
from driftloop.serving.stamps import IdKeys

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.settings import Settings

__all__ = ["KEY_FILE", "prediction_id_keys"]

KEY_FILE = "serving/prediction-id.key"
_KEY_HEX = 64  # 256 random bits, as hex, on one line


def prediction_id_keys(settings: Settings) -> IdKeys:
    """The keys for ``settings``: the configured secret first, else the home's key; then the previous
    secrets. Raises :class:`ConfigError` naming the file when the home's key cannot be read or made."""
    cfg = settings.serving
    first = cfg.id_secret.get_secret_value().encode() if cfg.id_secret is not None else None
    if first is None:
        first = _home_key(settings.home / KEY_FILE)
    return IdKeys([first, *(s.get_secret_value().encode() for s in cfg.id_previous_secrets)])


def _home_key(path: Path) -> bytes:
    """The key in ``path``, created when absent. Several processes may start at once (workers): each
    writes a candidate aside and links it into place, which fails for all but the first, and all of
    them then read the same key."""
    if not path.exists():
        candidate = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(_KEY_HEX // 2) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: its key stands
                os.link(candidate, path)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the prediction-id key {path}: {exc.strerror}; set serving.id_secret"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                candidate.unlink()
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the prediction-id key {path}: {exc.strerror}") from None
    if len(text) != _KEY_HEX or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(
            f"the prediction-id key {path} is not {_KEY_HEX} hex digits: restore it, or delete it to make "
            "a new one (ids issued under the old key are then unknown)"
        )
    return text.encode()
