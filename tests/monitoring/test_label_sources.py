"""Labels by source through the store: inverted or meaningless sources are suspicious and left out of
the decay judgement, real decay stays DECAY, conflicts keep the first label, labels outside the model's
label set are left out, and the report says all of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from driftloop.capture.parquet import parquet_objects
from driftloop.capture.records import normalize
from driftloop.core.labels import LabelSpec
from driftloop.core.profile import build_profile
from driftloop.monitoring.assess import Assessment, assess
from driftloop.monitoring.labels import read_label_book
from driftloop.monitoring.report import prometheus_text, render_html, summarize
from driftloop.monitoring.window import iter_captures
from driftloop.settings import ColumnSpec, MonitoringSettings
from driftloop.storage import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage import ObjectStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(days=1))
AS_OF = T0 + timedelta(days=2)
FIELDS = (ColumnSpec(name="x", type="float"),)
CFG = MonitoringSettings(min_labels=200)
SKILL = 2.16  # separation of the failures' logits: a ROC AUC of about 0.937, the issue's model


def _outcomes(rng: np.random.Generator, n: int, skill: float = SKILL) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes (20 % failures) and the scores of a model that separates them by ``skill``."""
    y = (rng.random(n) < 0.2).astype(np.float64)
    scores = 1 / (1 + np.exp(-(-2.0 + skill * y + rng.normal(size=n))))
    return y, scores


@dataclass
class Window:
    store: ObjectStore
    y: np.ndarray  # what really happened to each prediction
    profile: dict[str, Any]
    evaluation: dict[str, Any]  # the model's hold-out metrics, measured on its own hold-out draw

    def ids(self, rows: range) -> list[str]:
        return [f"p{i:05d}" for i in rows]

    def label(self, source: str, rows: range, labels: Any, *, hours: float = 2.0) -> None:
        """``source`` sends ``labels`` for ``rows``, ``hours`` after the window starts."""
        at = T0 + timedelta(hours=hours)
        records = []
        for k, (pid, label) in enumerate(zip(self.ids(rows), labels, strict=True)):
            record = {"kind": "feedback", "prediction_id": pid, "ts": at + timedelta(microseconds=k)}
            records.append(normalize(record | {"label": float(label), "source": source}))
        for key, data in parquet_objects(records, f"w-{source}-{hours}-seg-{len(records):020d}"):
            self.store.write_bytes(key, data)

    def assess(
        self, cfg: MonitoringSettings = CFG, spec: LabelSpec | None = None, *, pooled: bool = False
    ) -> Assessment:
        """The window assessed with the labels by source (``pooled``: merged into one, as before sources),
        against the label set ``spec`` (default: a classifier's, as the monitor reads its model's)."""
        spec = spec or LabelSpec()
        chunks = iter_captures(
            self.store, model="m", start=WINDOW[0], end=WINDOW[1], chunk_rows=1000, fields=FIELDS
        )
        book = read_label_book(self.store, *WINDOW, as_of=AS_OF, spec=spec)
        labels = book.merged() if pooled else book
        return assess(
            self.profile,
            chunks,
            schema=FIELDS,
            cfg=cfg,
            labels=labels,
            evaluation=self.evaluation,
            label_spec=spec,
        )


def _window(tmp_path: Path, n: int = 4000, *, seed: int = 0, skill: float = SKILL) -> Window:
    """``n`` captured predictions of a model with the issue's hold-out skill; outcomes by ``skill``."""
    rng = np.random.default_rng(seed)
    held_y, held_s = _outcomes(rng, 5000)
    evaluation = {"roc_auc": float(roc_auc_score(held_y, held_s)), "threshold": 0.3}
    profile = build_profile({"x": rng.normal(size=5000)}, numeric=["x"], categorical=[], scores=held_s)
    y, scores = _outcomes(rng, n, skill)
    x = rng.normal(size=n)
    served = {"model_name": "m", "model_version": 1, "outputs": {}, "latency_ms": 1.0, "fallback": False}
    records = [
        normalize(
            served
            | {"kind": "prediction", "prediction_id": f"p{i:05d}", "ts": T0 + timedelta(seconds=i)}
            | {"inputs": {"x": float(x[i])}, "score": float(scores[i]), "endpoint": "/v1/predict"}
        )
        for i in range(n)
    ]
    store = open_store(str(tmp_path / "store"))
    for key, data in parquet_objects(records, "w-seg-00000000000000000001"):
        store.write_bytes(key, data)
    return Window(store, y, profile, evaluation)


def _source(result: Assessment, name: str) -> dict[str, Any]:
    assert result.label_audit is not None
    return next(s for s in result.label_audit["sources"] if s["source"] == name)


def test_the_issues_scenario_inverted_labels_beside_correct_ones_are_suspicious_not_decay(
    tmp_path: Path,
) -> None:
    w = _window(tmp_path)
    assert w.evaluation["roc_auc"] > 0.9
    first, second = range(2000), range(2000, 4000)
    w.label("plant-floor", first, w.y[first.start : first.stop])
    w.label("contractor", second, 1 - w.y[second.start : second.stop])  # 2,000 inverted labels
    result = w.assess()
    assert result.decision == "WARN"  # a person looks; no DRIFT/DECAY, so no automated retraining
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == ["contractor"]
    contractor = _source(result, "contractor")
    assert contractor["value"] < 0.2
    assert contractor["z"] < -CFG.suspicious_z
    assert contractor["why"].startswith("inverted: roc_auc")
    assert not _source(result, "plant-floor")["suspicious"]
    performance = result.performance
    assert performance is not None
    assert (performance["judged"], performance["decayed"]) == (True, False)
    assert performance["labelled"] == 2000  # the plant floor's labels alone
    assert performance["left_out"] == 2000
    assert any(r.startswith("suspicious labels from source 'contractor': inverted:") for r in result.reasons)
    # The premise: the same labels pooled as one source are the issue's DECAY.
    assert w.assess(pooled=True).decision == "DECAY"


def test_a_lone_inverted_source_is_judged_against_the_hold_out_and_retrains_nothing(tmp_path: Path) -> None:
    """No other source to compare with: a model with a hold-out ROC AUC of 0.93 does not rank outcomes
    backwards after a real change; flipped labels do."""
    w = _window(tmp_path)
    everything = range(4000)
    w.label("api", everything, 1 - w.y)
    result = w.assess()
    assert result.decision == "WARN"
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == ["api"]
    api = _source(result, "api")
    assert api["value"] < 0.1
    assert f"the model's hold-out roc_auc is {w.evaluation['roc_auc']:.3f}" in api["why"]
    performance = result.performance
    assert performance is not None
    assert not performance["judged"]
    assert performance["why"] == (
        "0 labelled predictions, fewer than monitoring.min_labels = 200 (after leaving out 4,000 predictions "
        "labelled only by suspicious sources)"
    )


def test_an_inverted_source_that_labels_first_loses_to_a_later_honest_one(tmp_path: Path) -> None:
    w = _window(tmp_path)
    everything = range(4000)
    w.label("early-bird", everything, 1 - w.y, hours=1)  # first: its labels would win…
    w.label("plant-floor", everything, w.y, hours=3)
    result = w.assess()
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == ["early-bird"]
    assert result.label_audit["conflicts"] == 4000
    assert result.label_audit["conflicts_by_source"] == [
        {"first": "early-bird", "later": "plant-floor", "count": 4000}
    ]
    performance = result.performance
    assert performance is not None
    # …but a suspicious source's labels are left out first, so the plant floor's are judged.
    assert (performance["labelled"], performance["judged"], performance["decayed"]) == (4000, True, False)
    assert result.decision == "WARN"


def test_a_source_of_meaningless_labels_is_suspicious_when_the_others_agree(tmp_path: Path) -> None:
    w = _window(tmp_path, seed=1)
    first, second = range(2500), range(2500, 4000)
    w.label("plant-floor", first, w.y[first.start : first.stop])
    coin = np.random.default_rng(3).random(len(second)) < 0.2  # a failure rate that looks right
    w.label("bot", second, coin.astype(float))
    result = w.assess()
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == ["bot"]
    assert _source(result, "bot")["why"].startswith("disagrees with the other sources: roc_auc 0.")
    assert result.decision == "WARN"
    assert w.assess(pooled=True).decision == "DECAY"


def test_real_decay_seen_by_every_source_stays_decay(tmp_path: Path) -> None:
    """The world changed: the model lost most of its skill for every source's labels."""
    w = _window(tmp_path, seed=2, skill=0.6)
    w.label("plant-floor", range(2000), w.y[:2000])
    w.label("contractor", range(2000, 4000), w.y[2000:])
    result = w.assess()
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == []
    assert result.decision == "DECAY"
    assert result.reasons[0].startswith("decay: roc_auc ")


def test_a_source_labelling_a_harder_slice_is_kept(tmp_path: Path) -> None:
    """Worse than the others, still far better than chance: a real difference, not a wrong source."""
    w = _window(tmp_path, seed=3)
    w.label("plant-floor", range(3000), w.y[:3000])
    rng = np.random.default_rng(5)
    flipped = rng.random(1000) < 0.15  # 15 % of its labels wrong: its ROC AUC drops, far from chance
    w.label("night-shift", range(3000, 4000), np.where(flipped, 1 - w.y[3000:], w.y[3000:]))
    result = w.assess()
    night = _source(result, "night-shift")
    assert 0.55 < night["value"] < 0.85
    assert not night["suspicious"]
    assert result.label_audit is not None
    assert result.label_audit["suspicious"] == []


def test_conflicting_labels_keep_the_first_are_counted_and_reported(tmp_path: Path) -> None:
    w = _window(tmp_path, seed=4, n=1000)
    w.label("plant-floor", range(1000), w.y)
    w.label("plant-floor", range(50), 1 - w.y[:50], hours=5)  # it changed its mind on 50
    w.label("auditor", range(50, 80), w.y[50:80], hours=6)  # agrees: duplicates, not conflicts
    result = w.assess()
    assert result.label_audit is not None
    assert result.label_audit["conflicts"] == 50
    assert result.label_audit["duplicates"] == 30
    [example, *_] = result.label_audit["conflict_examples"]
    assert (example["prediction_id"], example["first_label"]) == ("p00000", float(w.y[0]))
    performance = result.performance
    assert performance is not None
    assert performance["labelled"] == 1000
    assert performance["judged"]
    assert not performance["decayed"]  # the first labels, the right ones, were kept
    reason = next(r for r in result.reasons if r.startswith("label conflicts"))
    assert reason == (
        "label conflicts: 50 prediction ids were labelled again with a different label, the first label kept "
        "('plant-floor' then 'plant-floor': 50)"
    )
    assert result.decision == "WARN"


def test_labels_outside_the_label_set_are_left_out_and_reported(tmp_path: Path) -> None:
    w = _window(tmp_path, seed=5, n=1000)
    w.label("plant-floor", range(900), w.y[:900])
    w.label("legacy", range(900, 1000), [7, 1e300, -5, 0.5] * 25)  # accepted before the service checked
    result = w.assess()
    assert result.label_audit is not None
    assert result.label_audit["invalid"] == {"legacy": 100}
    performance = result.performance
    assert performance is not None
    assert performance["labelled"] == 900
    assert performance["positives"] == int(w.y[:900].sum())
    assert (performance["judged"], performance["decayed"]) == (True, False)
    assert (
        "invalid labels: 100 labels are not 0 or 1 (or false/true) for this classification model and were "
        "left out ('legacy' 100)"
    ) in result.reasons
    json.dumps(result.to_json(), allow_nan=False)


def test_a_regression_models_labels_are_judged_on_its_own_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 1000
    truth = rng.normal(50, 10, n)
    served = truth + rng.normal(0, 2, n)
    held = rng.normal(50, 10, 5000)
    evaluation = {"rmse": 2.0, "r2": 0.96}
    store = open_store(str(tmp_path / "store"))
    base = {"model_name": "m", "model_version": 1, "outputs": {}, "latency_ms": 1.0, "fallback": False}
    records = [
        normalize(
            base
            | {
                "kind": "prediction",
                "prediction_id": f"p{i:05d}",
                "ts": T0 + timedelta(seconds=i),
                "inputs": {"x": 0.0},
                "score": float(served[i]),
                "endpoint": "/v1/predict",
            }
        )
        for i in range(n)
    ]
    w = Window(
        store, truth, build_profile({"x": held}, numeric=["x"], categorical=[], target=held), evaluation
    )
    for key, data in parquet_objects(records, "w-seg-00000000000000000001"):
        store.write_bytes(key, data)
    w.label("api", range(n), truth)
    w.label("legacy", range(n), [1e300] * n, hours=4)  # outside the band the training target gives
    spec = LabelSpec.derive("regression", w.profile)
    result = w.assess(spec=spec)
    performance = result.performance
    assert performance is not None
    assert performance["metric"] == "rmse"  # the default roc_auc is a classifier's
    assert performance["judged"]
    assert not performance["decayed"]
    assert 1.5 < performance["current"] < 2.5
    assert result.label_audit is not None
    assert result.label_audit["invalid"] == {"legacy": n}
    assert _source(result, "api")["statistic"] == "pearson_r"


def test_the_report_json_html_and_gauges_name_the_suspicious_source(tmp_path: Path) -> None:
    w = _window(tmp_path)
    w.label("plant-floor", range(2000), w.y[:2000])
    w.label("contractor <x>", range(2000, 4000), 1 - w.y[2000:])
    result = w.assess()
    document = json.loads(json.dumps(result.to_json()))
    assert document["label_audit"]["suspicious"] == ["contractor <x>"]
    assert [s["source"] for s in document["label_audit"]["sources"]] == ["contractor <x>", "plant-floor"]
    assert summarize(result)["suspicious_sources"] == ["contractor <x>"]
    page = render_html(result)
    assert "<h2>Label sources</h2>" in page
    assert "contractor &lt;x&gt;" in page
    assert "contractor <x>" not in page
    assert "suspicious: left out" in page
    gauges = prometheus_text(result, model="m", version=1, at=T0).decode()
    assert 'driftloop_monitor_suspicious_sources{model="m",version="1"} 1.0' in gauges


@pytest.mark.parametrize("labels", [None, {}])
def test_no_labels_no_audit(tmp_path: Path, labels: dict[str, float] | None) -> None:
    w = _window(tmp_path, n=300)
    chunks = iter_captures(w.store, model="m", start=WINDOW[0], end=WINDOW[1], chunk_rows=1000, fields=FIELDS)
    result = assess(w.profile, chunks, schema=FIELDS, cfg=CFG, labels=labels, evaluation=w.evaluation)
    assert (result.label_audit is None) == (labels is None)
    assert result.decision == "OK"
