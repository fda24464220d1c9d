"""The ONNX Runtime fast path: same scores as torch, refuses what it cannot reproduce, thread-safe."""

from __future__ import annotations

import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from torch import nn

from driftloop.errors import DriftloopError
from driftloop.serving.model import LoadedModel
from driftloop.serving.onnx import OnnxScorer, OnnxUnavailable
from driftloop.settings import TrainingSettings
from driftloop.training.loop import fit
from driftloop.training.model import ScoringModel, build_model

from .fakes import plant_model, plant_rows

if TYPE_CHECKING:
    from pathlib import Path

WIDTH = 6


@pytest.fixture(scope="module")
def trained() -> ScoringModel:
    """A briefly trained, Platt-calibrated classifier (non-trivial weights and calibration buffers)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, WIDTH)).astype(np.float32)
    y = (x @ np.array([1.5, -1.0, 0.8, 0.0, 0.0, 0.3]) + rng.normal(scale=0.5, size=1500) > 1.2).astype(float)
    cfg = TrainingSettings(max_epochs=3, hidden=(16, 8), threads=1)
    model = fit(build_model(cfg, WIDTH), (x[:1200], y[:1200]), (x[1200:], y[1200:]), cfg).model.eval()
    assert float(model.calibration_slope) != 1.0  # calibrated: the buffers must travel into the graph
    return model


@pytest.fixture(scope="module")
def scorer(trained: ScoringModel) -> OnnxScorer:
    return OnnxScorer.build(trained, WIDTH)


def _torch(module: nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(features.astype(np.float32))).numpy().astype(np.float64).reshape(-1)


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_scores_match_torch_for_one_and_many_rows(
    trained: ScoringModel, scorer: OnnxScorer, rows: int
) -> None:
    features = np.random.default_rng(rows).normal(scale=2.0, size=(rows, WIDTH))  # float64 in, like numpy
    got = scorer(features)
    expected = _torch(trained, features)
    assert got.dtype == np.float64
    assert got.shape == (rows,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert got.min() > 0.0
    assert got.max() < 1.0
    assert rows == 1 or got.std() > 0.01  # real probabilities, not a constant
    assert 0.0 <= scorer.max_abs_diff <= 1e-5


def test_matches_the_service_model_on_real_plant_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = plant_model(seed=4)
    features = model.spec.features(plant_rows(50, seed=8))
    fast = OnnxScorer.build(model.module, features.shape[1])
    np.testing.assert_allclose(fast(features), model.score_features(features), rtol=0, atol=1e-5)
    assert fast(features[:1]).shape == (1,)
    assert list(tmp_path.iterdir()) == []  # exported in memory: no file left behind


def test_a_column_output_is_flattened_like_score_features() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).eval()  # (n, 1) output
    model = LoadedModel("m", 1, None, spec=None, module=module, threshold=None)  # type: ignore[arg-type]
    features = np.random.default_rng(1).normal(size=(9, 4))
    got = OnnxScorer.build(module, 4)(features)
    assert got.shape == (9,)
    np.testing.assert_allclose(got, model.score_features(features), rtol=0, atol=1e-6)


class _Branchy(nn.Module):
    """Python control flow on a tensor value: a trace records only the branch taken."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x).reshape(-1)
        if out.mean() > 0:
            return out
        return -out


class _Fourier(nn.Module):
    """An operator the ONNX exporter has no translation for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real.sum(dim=-1)


class _NumpyClamp(torch.autograd.Function):
    """A custom op that leaves torch for numpy: invisible to the tracer."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.clip(x.detach().numpy(), 0.0, None))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _CustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NumpyClamp.apply(self.linear(x)).reshape(-1)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (
            _Branchy(),
            "the traced graph may not hold for other inputs: Converting a tensor to a Python boolean",
        ),
        # Leaving torch for numpy warns twice (tensor → array, array → tensor); which warning torch
        # raises first varies between runs, so only the numpy round trip is asserted.
        (
            _CustomOp(),
            "the traced graph may not hold for other inputs: "
            "(Converting a tensor to a NumPy array|torch.from_numpy results are registered as constants)",
        ),
        (
            _Fourier(),
            "export to ONNX failed: UnsupportedOperatorError: Exporting the operator 'aten::fft_fft'",
        ),
    ],
    ids=["control-flow", "custom-op", "unsupported-op"],
)
def test_a_module_the_exporter_cannot_handle_is_refused_with_the_reason(
    module: nn.Module, reason: str
) -> None:
    # As in the service, where a tracer warning is no error: the scorer must refuse on its own.
    with warnings.catch_warnings(), pytest.raises(OnnxUnavailable) as caught:
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        OnnxScorer.build(module.eval(), WIDTH)
    assert re.match(reason, caught.value.headline), caught.value.headline
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, DriftloopError)


def test_scores_that_differ_from_torch_are_refused(
    trained: ScoringModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    real_run = onnxruntime.InferenceSession.run

    def shifted(self: Any, names: Any, feeds: Any, options: Any = None) -> list[np.ndarray]:
        return [out + np.float32(1e-3) for out in real_run(self, names, feeds, options)]

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", shifted)
    with pytest.raises(OnnxUnavailable, match=r"ONNX scores differ from torch's by 0\.001 on 256 rows"):
        OnnxScorer.build(trained, WIDTH)
    # The same session within a looser tolerance is accepted, and reports what it measured.
    loose = OnnxScorer.build(trained, WIDTH, atol=2e-3)
    assert loose.max_abs_diff == pytest.approx(1e-3, rel=1e-2)


def test_a_wrong_width_or_a_training_mode_module_is_refused(trained: ScoringModel) -> None:
    with pytest.raises(OnnxUnavailable, match="export to ONNX failed: RuntimeError: mat1 and mat2 shapes"):
        OnnxScorer.build(trained, WIDTH + 1)
    dropout = ScoringModel(nn.Sequential(nn.Dropout(0.5), nn.Linear(WIDTH, 1)), "classification")
    with pytest.raises(OnnxUnavailable, match=r"training mode; call \.eval\(\)"):
        OnnxScorer.build(dropout, WIDTH)


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_a_missing_package_is_named(
    trained: ScoringModel, monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    with pytest.raises(OnnxUnavailable, match=rf"needs the '{package}' package .*install driftloop\[onnx\]"):
        OnnxScorer.build(trained, WIDTH)


def test_concurrent_calls_give_the_sequential_results(scorer: OnnxScorer) -> None:
    rng = np.random.default_rng(11)
    batches = [rng.normal(size=(int(rng.integers(1, 65)), WIDTH)) for _ in range(48)]
    sequential = [scorer(b) for b in batches]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(scorer, batches))
    assert len({len(s) for s in sequential}) > 5  # batches of many sizes, so a mix-up would show
    for one, other in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(one, other)


def test_a_served_model_switches_to_onnx_and_back_to_torch_when_it_fails() -> None:
    from fastapi.testclient import TestClient

    from driftloop.serving.app import create_app
    from driftloop.serving.model import ModelHolder

    model = plant_model(1)
    rows = plant_rows(20, seed=3)
    torch_scores = model.score(rows)
    model.accelerate()
    assert model.engine == "onnxruntime"
    np.testing.assert_allclose(model.score(rows), torch_scores, rtol=0, atol=1e-5)

    def broken(_: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime session died (simulated)")

    model.fast = broken
    holder = ModelHolder()
    holder.install(model)
    client = TestClient(create_app(holder))
    response = client.post("/v1/predict", json={"instances": rows})
    assert response.status_code == 200
    assert not any(p["fallback"] for p in response.json()["predictions"])  # torch answered, same version
    got = [p["score"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, torch_scores, rtol=0, atol=1e-7)
    info = client.get("/v1/model").json()["current"]
    assert info["engine"] == "torch"
    assert "session died" in info["engine_note"]
