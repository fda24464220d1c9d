"""An optional ONNX Runtime fast path for scoring: the same scores as the torch module, faster per call.

:meth:`OnnxScorer.build` exports the module in memory with torch's TorchScript-based exporter
(``dynamo=False``, see decision 0017): it needs only ``onnx`` beside torch, works offline and keeps the
batch axis dynamic. The bytes go straight into an ``onnxruntime.InferenceSession`` that runs one intra-op
and one inter-op thread, sequentially, on the CPU provider: the host has two cores and requests already
run concurrently, so one thread per worker is the rule, as for torch in the server.

Nothing is trusted blindly. The export runs with the tracer's warnings turned into errors (a warning
means the trace may not hold for other inputs, e.g. Python control flow on tensor values), and the
session must reproduce torch's scores on a seeded probe batch and on a single row within ``atol``.
Any failure, including a missing ``onnx`` or ``onnxruntime``, is an :class:`OnnxUnavailable` whose
headline says why, so the caller keeps scoring with torch.

:meth:`OnnxScorer.__call__` returns float64 scores of shape ``(n,)``, exactly like
:meth:`~driftloop.serving.model.LoadedModel.score_features`. ``InferenceSession.run`` is thread-safe,
and the scorer holds no other mutable state, so concurrent requests may share one scorer.
"""

from __future__ import annotations

import io
import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    import torch

__all__ = ["OnnxScorer", "OnnxUnavailable"]

_INPUT = "features"
_OUTPUT = "scores"
_PROBE_SEED = 20_170
# Deprecation notices the TorchScript-based exporter emits on every call in torch ≥ 2.9; the choice of
# this exporter is deliberate (decision 0017), so these two, and only these, are silenced.
_EXPORTER_NOTICES = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",
)


class OnnxUnavailable(DriftloopError):  # noqa: N818 - the name says what the caller handles: no fast path
    """The ONNX fast path cannot serve this model (package missing, export failed, scores differ)."""


def _require(package: str) -> Any:
    try:
        return import_module(package)
    except ImportError as exc:
        raise OnnxUnavailable(
            f"the ONNX fast path needs the {package!r} package ({exc}); install driftloop[onnx]"
        ) from None


def _export(module: torch.nn.Module, width: int) -> bytes:
    """The module as ONNX bytes, rows as a dynamic axis; nothing is written to disk."""
    import torch

    # The public name of the tracer's warning; torch.jit does not list it in __all__.
    tracer_warning: type[Warning] = torch.jit.TracerWarning  # type: ignore[attr-defined]
    example = torch.zeros(2, width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        for message in _EXPORTER_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        warnings.filterwarnings("error", category=tracer_warning)
        try:
            # The TorchScript-based exporter also writes to a binary file object, which its types omit.
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                input_names=[_INPUT],
                output_names=[_OUTPUT],
                dynamic_axes={_INPUT: {0: "rows"}, _OUTPUT: {0: "rows"}},
            )
        except Exception as exc:  # the exporter raises many types; every one means "no fast path"
            raise OnnxUnavailable(_export_failure(exc, tracer_warning)) from exc
    return buffer.getvalue()


def _export_failure(exc: BaseException, tracer_warning: type[Warning]) -> str:
    """One line on why the export failed; a tracer warning raised inside torch's C++ arrives wrapped."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, tracer_warning):
            return f"the traced graph may not hold for other inputs: {cause}"
        cause = cause.__cause__ or cause.__context__
    first_line = next(iter(str(exc).strip().splitlines()), "")
    return f"export to ONNX failed: {type(exc).__name__}: {first_line}"


def _session(model: bytes) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types are not part of its typed API
        raise OnnxUnavailable(f"ONNX Runtime cannot load the exported model: {exc}") from exc


def _torch_scores(module: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out: torch.Tensor = module(torch.from_numpy(features))
    scores: np.ndarray = out.numpy().astype(np.float64).reshape(-1)
    return scores


class OnnxScorer:
    """Scores float32 feature rows through ONNX Runtime; build it with :meth:`build`."""

    def __init__(self, session: Any, width: int, max_abs_diff: float) -> None:
        self._session = session
        self.width = width
        self.max_abs_diff = max_abs_diff

    @classmethod
    def build(
        cls, module: torch.nn.Module, width: int, *, atol: float = 1e-5, probe_rows: int = 256
    ) -> OnnxScorer:
        """Export ``module`` (in eval mode, ``(n, width)`` float32 in), open a session, check parity.

        Raises :class:`OnnxUnavailable` when a package is missing, the export fails or is unfaithful,
        or the scores on the probe batch (``probe_rows`` seeded normal rows) or on one row differ from
        torch's by more than ``atol``.
        """
        _require("onnx")  # the TorchScript-based exporter serialises through it
        _require("onnxruntime")
        if width < 1 or probe_rows < 1:
            raise OnnxUnavailable(f"width ({width}) and probe_rows ({probe_rows}) must be positive")
        if module.training:
            raise OnnxUnavailable("the module is in training mode; call .eval() before building")
        scorer = cls(_session(_export(module, width)), width, max_abs_diff=0.0)
        probe = np.random.default_rng(_PROBE_SEED).normal(size=(probe_rows, width)).astype(np.float32)
        worst = 0.0
        for batch in (probe, probe[:1].copy()):
            expected = _torch_scores(module, batch)
            try:
                got = scorer(batch)
            except Exception as exc:  # a session that cannot run the probe cannot serve either
                raise OnnxUnavailable(f"ONNX Runtime failed on a {batch.shape} probe: {exc}") from exc
            if got.shape != expected.shape:
                raise OnnxUnavailable(
                    f"ONNX returns {got.shape} scores for {len(batch)} rows, torch {expected.shape}"
                )
            diff = float(np.max(np.abs(got - expected), initial=0.0))
            if not diff <= atol:  # also refuses NaN
                raise OnnxUnavailable(
                    f"ONNX scores differ from torch's by {diff:.3g} on {len(batch)} rows (atol {atol:g})"
                )
            worst = max(worst, diff)
        scorer.max_abs_diff = worst
        return scorer

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Float64 scores, shape ``(n,)``, for an ``(n, width)`` feature matrix; safe across threads."""
        batch = np.ascontiguousarray(features, dtype=np.float32)
        outputs = self._session.run([_OUTPUT], {_INPUT: batch})
        scores: np.ndarray = np.asarray(outputs[0]).astype(np.float64).reshape(-1)
        return scores
