"""Live evidence from captures: the shadow comparison and the guard's verdict, on synthetic traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pytest

from driftloop.capture.parquet import parquet_objects
from driftloop.monitoring.live import guard_verdict, live_scores, shadow_comparison
from driftloop.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage import ObjectStore

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _settings(tmp_path: Path, **policy: float) -> Settings:
    base = Settings(home=tmp_path)
    return base.model_copy(update={"policy": base.policy.model_copy(update=policy)})


def _traffic(
    settings: Settings,
    n: int,
    *,
    champion_skill: float,
    challenger_skill: float | None,
    labelled: int,
    seed: int = 0,
    fallback_every: int = 0,
) -> None:
    """``n`` predictions answered by v1 (v2 in shadow when ``challenger_skill``), the first ``labelled``
    with feedback; skill 1 ranks failures perfectly, 0 is noise."""
    from driftloop.storage import store_for

    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    noise = rng.random((2, n))
    champion = champion_skill * y + (1 - champion_skill) * noise[0]
    challenger = (
        None if challenger_skill is None else challenger_skill * y + (1 - challenger_skill) * noise[1]
    )
    records = []
    for i in range(n):
        ts = (T0 + timedelta(seconds=i)).isoformat(timespec="microseconds")
        fallback = bool(fallback_every and i % fallback_every == 0)
        shadow = {"shadow_version": 2, "shadow_score": float(challenger[i])} if challenger is not None else {}
        records.append(
            {
                "kind": "prediction",
                "prediction_id": f"p{i:05d}",
                "ts": ts,
                "model_name": "plant-failure",
                "model_version": 1,
                "inputs": {"record_id": f"r{i}"},
                "outputs": {},
                "score": float(champion[i]),
                "latency_ms": 1.0,
                "fallback": fallback,
                "endpoint": "/v1/predict",
                **shadow,
            }
        )
    later = (T0 + timedelta(hours=1)).isoformat()
    records += [
        {"kind": "feedback", "prediction_id": f"p{i:05d}", "ts": later, "label": float(y[i]), "source": "api"}
        for i in range(labelled)
    ]
    store: ObjectStore = store_for(settings)
    for key, data in parquet_objects(records, f"seg-{seed}"):
        store.write_bytes(key, data)


def _shadow(settings: Settings) -> tuple[bool, dict[str, object], str]:
    from driftloop.storage import store_for

    result = shadow_comparison(
        settings,
        store_for(settings),
        challenger=2,
        champion=1,
        threshold=0.5,
        since=T0,
        now=T0 + timedelta(hours=2),
    )
    return result.passed, result.evidence, result.detail


def test_shadow_evidence_is_pending_until_enough_labels(tmp_path: Path) -> None:
    settings = _settings(tmp_path, shadow_min_labels=300)
    _traffic(settings, 500, champion_skill=0.3, challenger_skill=0.8, labelled=200)
    passed, evidence, detail = _shadow(settings)
    assert not passed
    assert evidence["pending"] is True
    assert (evidence["shadow_requests"], evidence["labelled"]) == (500, 200)
    assert "200 of 300" in detail


def test_a_better_challenger_passes_and_a_worse_one_fails_on_the_same_requests(tmp_path: Path) -> None:
    better = _settings(tmp_path / "a", shadow_min_labels=200)
    _traffic(better, 600, champion_skill=0.3, challenger_skill=0.8, labelled=600)
    passed, evidence, _ = _shadow(better)
    assert passed
    assert evidence["challenger"] > evidence["champion"]
    worse = _settings(tmp_path / "b", shadow_min_labels=200)
    _traffic(worse, 600, champion_skill=0.8, challenger_skill=0.3, labelled=600)
    passed, evidence, detail = _shadow(worse)
    assert not passed
    assert evidence["pending"] is False
    assert "is worse than" in detail


def test_the_sequential_judgement_stops_once_decisive_and_waits_while_undecided(tmp_path: Path) -> None:
    # Clearly better: decided on the first 100 labels already (a fixed-size test would wait for 200).
    early = _settings(tmp_path / "a", shadow_min_labels=50)
    _traffic(early, 600, champion_skill=0.1, challenger_skill=0.9, labelled=100)
    passed, evidence, detail = _shadow(early)
    assert passed, detail
    assert evidence["labelled"] == 100
    low, high = evidence["brier_difference"]
    assert low <= high <= evidence["margin"]
    assert "95% anytime-valid" in detail
    # Two equally skilled models: the interval straddles the margin, so the gate waits (pending), neither
    # promoting a challenger not shown to be as good nor refusing one not shown to be worse.
    tie = _settings(tmp_path / "b", shadow_min_labels=50)
    _traffic(tie, 400, champion_skill=0.5, challenger_skill=0.5, labelled=400)
    passed, evidence, detail = _shadow(tie)
    assert not passed
    assert evidence["pending"] is True
    assert "not yet decided" in detail


def test_requests_answered_by_the_fallback_are_not_shadow_evidence(tmp_path: Path) -> None:
    settings = _settings(tmp_path, shadow_min_labels=1)
    _traffic(settings, 400, champion_skill=0.5, challenger_skill=0.5, labelled=400, fallback_every=4)
    _, evidence, _ = _shadow(settings)
    assert evidence["shadow_requests"] == 300


def test_live_scores_join_feedback_and_old_traffic_has_no_shadow(tmp_path: Path) -> None:
    from driftloop.storage import store_for

    settings = _settings(tmp_path)
    _traffic(settings, 50, champion_skill=1.0, challenger_skill=None, labelled=20)
    live = live_scores(settings, store_for(settings), T0, T0 + timedelta(hours=2))
    assert live.rows == 50
    assert live.labelled().rows == 20
    assert (live.shadow_version == -1).all()
    assert np.isnan(live.shadow_score).all()
    assert live.metrics(0.5)["roc_auc"] == pytest.approx(1.0)


def test_the_guard_judges_error_rate_and_decay_against_its_baseline(tmp_path: Path) -> None:
    from driftloop.storage import store_for

    settings = _settings(tmp_path, guard_min_labels=100, guard_max_error_rate=0.2, guard_margin=0.05)
    _traffic(settings, 400, champion_skill=0.1, challenger_skill=None, labelled=400, fallback_every=10)
    store = store_for(settings)
    window = {"since": T0, "now": T0 + timedelta(hours=2), "threshold": 0.5}
    calm = guard_verdict(settings, store, version=1, baseline=0.5, **window)  # type: ignore[arg-type]
    assert not calm.rollback
    assert calm.error_rate == pytest.approx(0.1)
    assert calm.labelled == 360  # its own answers only, not the fallback's
    decayed = guard_verdict(settings, store, version=1, baseline=0.99, **window)  # type: ignore[arg-type]
    assert decayed.rollback
    assert "below the baseline 0.9900" in decayed.reasons[0]
    strict = _settings(tmp_path, guard_min_labels=100, guard_max_error_rate=0.05)
    failing = guard_verdict(strict, store, version=1, baseline=0.5, **window)  # type: ignore[arg-type]
    assert failing.rollback
    assert "error rate 10.0%" in failing.reasons[0]


def test_the_guard_acts_on_undisputed_labels_and_not_when_sources_disagree(tmp_path: Path) -> None:
    from driftloop.storage import store_for

    settings = _settings(tmp_path, guard_min_labels=100, guard_margin=0.05)
    _traffic(settings, 400, champion_skill=0.8, challenger_skill=None, labelled=400)  # source "api", true
    truth = dict(enumerate(_labels_of(settings)))
    store = store_for(settings)
    window = {"since": T0, "now": T0 + timedelta(hours=2), "threshold": 0.5}

    def poison(rows: range, at: datetime) -> None:
        records = [
            {
                "kind": "feedback",
                "prediction_id": f"p{i:05d}",
                "ts": at.isoformat(),
                "label": 1.0 - truth[i],
                "source": "poisoner",
            }
            for i in rows
        ]
        for key, data in parquet_objects(records, f"seg-poison-{rows.start}"):
            store.write_bytes(key, data)

    # Poisoned labels received first, the truth after: every label is disputed, none is evidence.
    poison(range(400), T0 + timedelta(minutes=30))
    disputed = guard_verdict(settings, store, version=1, baseline=0.85, **window)  # type: ignore[arg-type]
    assert not disputed.rollback
    assert disputed.labelled == 0
    assert disputed.reasons == ("400 disputed labels left out",)

    # Sources that each label their own predictions and disagree: one says decay, one says it holds.
    other = _settings(tmp_path / "other", guard_min_labels=100, guard_margin=0.05)
    _traffic(other, 400, champion_skill=0.8, challenger_skill=None, labelled=200)  # api labels p0–p199
    truth = dict(enumerate(_labels_of(other)))
    truth |= {i: float(y) for i, y in enumerate(np.random.default_rng(0).random(400) < 0.2) if i >= 200}
    store = store_for(other)
    poison(range(200, 400), T0 + timedelta(minutes=30))
    split = guard_verdict(other, store, version=1, baseline=0.85, **window)  # type: ignore[arg-type]
    assert not split.rollback
    assert "label sources disagree (api " in split.reasons[0]
    assert "not rolled back" in split.reasons[0]


def _labels_of(settings: Settings) -> list[float]:
    """The labels ``_traffic`` sent, in prediction order."""
    from driftloop.storage import store_for

    live = live_scores(settings, store_for(settings), T0, T0 + timedelta(hours=2))
    return [float(v) for v in live.label]
