"""The demo's story as data: the plan it follows and the timeline it returns.

Kept apart from the run (``driftloop.demo.run``) and the report (``driftloop.demo.report``) so that
both import these types from here and neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.scheduling.loop import LoopEvent

__all__ = ["DayRow", "DemoPlan", "DemoResult"]


@dataclass(frozen=True)
class DemoPlan:
    """The simulated story. Defaults take about two minutes on a 2-core machine."""

    start: date = date(2026, 1, 1)
    history_days: int = 8  # before the service starts: v1 is trained on these
    live_days: int = 10  # served, monitored, retrained
    onset_day: int = 3  # the live day drift begins (sensor offset + concept change)
    # The night of this live day a bad challenger is injected: a retraining on the days before the
    # onset only (the old regime), which the gates must keep out of production (0: none).
    bad_challenger_day: int = 8
    rows_per_day: int = 2500
    requests_per_day: int = 60  # HTTP requests a day, each of ``rows_per_request`` plant rows
    rows_per_request: int = 10
    machines: int = 20
    seed: int = 7
    max_epochs: int = 25

    def day(self, k: int) -> date:
        """Live day ``k`` (1-based) as a date."""
        return self.start + timedelta(days=self.history_days + k - 1)

    def environment(self, home: Path) -> dict[str, str]:
        """The configuration the demo runs under (as environment, so every subprocess shares it)."""
        return {
            "DRIFTLOOP_HOME": str(home),
            # Self-contained on loopback, with its own home and database: no tokens exist there.
            "DRIFTLOOP_AUTH__ENABLED": "false",
            "DRIFTLOOP_POLICY__REQUIRE_APPROVAL_FOR": "[]",  # the loop closes without a human
            "DRIFTLOOP_POLICY__ADVISORY_CHECKS": '["reproducibility"]',  # any checkout, dirty or not
            "DRIFTLOOP_POLICY__COMPARISON_DAYS": "3",
            "DRIFTLOOP_POLICY__COMPARISON_MIN_ROWS": "300",
            "DRIFTLOOP_POLICY__SHADOW_MIN_LABELS": str(
                min(200, self.requests_per_day * self.rows_per_request // 2)
            ),
            "DRIFTLOOP_POLICY__GUARD_HOURS": "48",
            "DRIFTLOOP_POLICY__GUARD_MIN_LABELS": "200",
            "DRIFTLOOP_SCHEDULE__RETRAIN_DAYS": "8",
            # Retrain once two days of the new regime are labelled (at the latest after 48 h).
            "DRIFTLOOP_SCHEDULE__RETRAIN_DELAY_HOURS": "48",
            "DRIFTLOOP_SCHEDULE__RETRAIN_MIN_LABELS": str(int(self.rows_per_day * 1.6)),
            "DRIFTLOOP_SCHEDULE__COOLDOWN_MINUTES": str(14 * 24 * 60),  # one incident, one retraining
            "DRIFTLOOP_SERVING__POLL_INTERVAL_S": "0.5",
            "DRIFTLOOP_TRAINING__MAX_EPOCHS": str(self.max_epochs),
            "DRIFTLOOP_CAPTURE__SEGMENT_MAX_AGE_S": "0.5",
        }


@dataclass
class DayRow:
    """One line of the timeline."""

    day: date
    version: int | None
    requests: int
    roc_auc: float | None
    f1: float | None
    decision: str
    events: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    """What the story did: the timeline, the loop's events, the key days and the report's URI."""

    rows: list[DayRow]
    events: list[tuple[date, LoopEvent]]
    onset: date
    detected: date | None
    promoted: date | None
    final_version: int | None
    report: str
    seconds: float
