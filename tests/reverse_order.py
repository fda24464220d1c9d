"""A check for order dependence, off by default: ``python -m pytest -p tests.reverse_order`` runs the
collected tests last to first (modules, and the tests inside each module), so a test that only passes
after another one has prepared something fails. Without pytest-randomly, the cheap deterministic probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.reverse()
