"""The model factory: the default MLP, user factories, and configuration errors that name the key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from driftloop.errors import ConfigError
from driftloop.settings import TrainingSettings
from driftloop.training.model import ScoringModel, build_model, load_factory, mlp

CUSTOM = "tests.training.custom_models"


def test_default_mlp_has_the_configured_layers_and_dropout() -> None:
    model = build_model(TrainingSettings(hidden=(16, 8), dropout=0.25), input_width=5)
    linears = [m for m in model.backbone.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 8), (8, 1)]
    assert [m.p for m in model.backbone.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25]


def test_classification_outputs_probabilities_and_regression_raw_values() -> None:
    x = torch.randn(50, 4) * 10
    clf = build_model(TrainingSettings(), 4).eval()
    reg = build_model(TrainingSettings(task="regression"), 4).eval()
    with torch.no_grad():
        p, v = clf(x), reg(x)
        assert p.shape == (50,)
        assert ((p > 0) & (p < 1)).all()
        torch.testing.assert_close(p, torch.sigmoid(clf.logits(x)))
        torch.testing.assert_close(v, reg.logits(x))


def test_same_seed_same_initial_weights_and_other_seed_differs() -> None:
    a = build_model(TrainingSettings(seed=7), 6).state_dict()
    b = build_model(TrainingSettings(seed=7), 6).state_dict()
    c = build_model(TrainingSettings(seed=8), 6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_user_factory_gets_only_the_arguments_it_accepts() -> None:
    model = build_model(TrainingSettings(model_factory=f"{CUSTOM}:linear", params={"bias": False}), 3)
    assert isinstance(model, ScoringModel)
    assert isinstance(model.backbone, nn.Linear)
    assert model.backbone.bias is None


def test_open_ended_factory_receives_params() -> None:
    model = build_model(TrainingSettings(model_factory=f"{CUSTOM}:wide", params={"width": 5}), 3)
    assert model.backbone[0].out_features == 5  # type: ignore[index]


@pytest.mark.parametrize(
    ("factory", "params", "message"),
    [
        ("no_such_pkg.models:mlp", {}, "training.model_factory: cannot import module 'no_such_pkg.models'"),
        (f"{CUSTOM}:missing", {}, f"training.model_factory: module '{CUSTOM}' has no 'missing'"),
        (f"{CUSTOM}:NOT_CALLABLE", {}, "is not a function"),
        (f"{CUSTOM}:not_a_module", {}, "returned str, not a torch.nn.Module"),
        (f"{CUSTOM}:two_outputs", {}, "must return one output per row, got shape (3, 2)"),
        (
            f"{CUSTOM}:linear",
            {"depth": 3},
            "training.params: tests.training.custom_models:linear does not accept depth",
        ),
    ],
)
def test_bad_factories_are_one_line_config_errors(factory: str, params: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(TrainingSettings(model_factory=factory, params=params), 3)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_factory_returns_the_default_mlp() -> None:
    assert load_factory("driftloop.training.model:mlp") is mlp
