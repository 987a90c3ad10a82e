"""Step 7 too: the trained model exported (LiteRT, ONNX, SavedModel), checked against Keras.

One conversion (formats.py, through Keras's own `model.export`) serves `cnn export` (its library
is tools/exporting.py) and the .tflite `cnn train` writes beside the model, and both are checked
here the same way. Every export is run by its own runtime on the model's whole test set before
it is put in place (`export_checked`): a float export must agree with Keras to float rounding, a
quantized one may lose at most `allow_drop` points of accuracy. The export carries the model's
card (card.py) in the format's own place (see formats.py), so `cnn predict/evaluate/serve
--model` read it as they read the .h5.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnn_mnist.core import files
from cnn_mnist.core.errors import ExportError
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.evaluate import predict_probabilities, traced
from cnn_mnist.stages.formats import atomic_export, write_export
from cnn_mnist.stages.handle import SavedModel
from cnn_mnist.stages.save import EXPECTED_INPUT, float32_copy

log = logging.getLogger(__name__)

# Largest probability difference a float32 export may show against Keras: the same float32
# arithmetic in another order (fused kernels, another GEMM) differs by ~1e-7 per value.
FLOAT_TOLERANCE = 1e-4
ALLOWED_DROP = 0.5  # points of test accuracy a quantized export may lose by default
TIMED_IMAGES = 200  # test images timed one at a time (batch 1), after a warm-up


@dataclass
class Checks:
    """The export run by its own runtime on the test set, against Keras."""

    images: int
    keras_accuracy: float
    export_accuracy: float
    agreement: float  # share of test images where both predict the same class
    max_prob_diff: float  # largest difference in any probability
    bytes: int
    ms_per_image: float  # batch 1, this CPU
    keras_ms_per_image: float | None = None

    @property
    def accuracy_drop(self) -> float:
        """Points of test accuracy lost (negative: gained)."""
        return round((self.keras_accuracy - self.export_accuracy) * 100, 4)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop_points": self.accuracy_drop}


@dataclass
class Export:
    """One export: what, where, how big, and its checks (as run.json's `exports` has it)."""

    format: str
    quantize: str
    path: Path
    bytes: int
    checks: Checks
    recorded_in: Path | None = None  # the run.json it was added to

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "quantize": self.quantize,
            "path": str(self.path),
            "bytes": self.bytes,
            "checks": self.checks.to_dict(),
        }


# --- conversion ------------------------------------------------------------------------------


def export_card(card: ModelCard | None, fmt: str, quantize: str) -> ModelCard:
    """The model's card as the export carries it: what the .h5 has (the run, the config,
    dataset and class names; not the checksum of its own LiteRT export), the input it takes,
    and what kind of export it is."""
    out = {k: v for k, v in (card.to_json() if card else {}).items() if k != "litert_sha256"}
    out.update(input_shape=list(EXPECTED_INPUT), export={"format": fmt, "quantize": quantize})
    return ModelCard.read(out)


# --- the checks ------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def ms_per_image(predictor, x: np.ndarray, count: int = TIMED_IMAGES) -> float:
    """Milliseconds per image, one image per call (batch 1), after a warm-up."""
    images = [x[i : i + 1] for i in range(min(count, len(x)))]
    for image in images[:10]:
        predictor(image)
    start = time.perf_counter()
    for image in images:
        predictor(image)
    return round((time.perf_counter() - start) / len(images) * 1000, 4)


def check(
    path: Path, x: np.ndarray, labels: np.ndarray, keras_probs: np.ndarray, keras_model=None
) -> Checks:
    """The export at `path` run by its own runtime on `x`, against Keras's `keras_probs`
    (and Keras's own time per image, where `keras_model` is given)."""
    predictor, _ = SavedModel.open(path).predictor()
    probs = predict_probabilities(predictor, x)
    ours, theirs = probs.argmax(axis=1), keras_probs.argmax(axis=1)
    keras_ms = None
    if keras_model is not None:
        keras_ms = ms_per_image(traced(keras_model), x)
    return Checks(
        images=len(x),
        keras_accuracy=float((theirs == labels).mean()),
        export_accuracy=float((ours == labels).mean()),
        agreement=float((ours == theirs).mean()),
        max_prob_diff=float(np.abs(probs - keras_probs).max()),
        bytes=_size(path),
        ms_per_image=ms_per_image(predictor, x),
        keras_ms_per_image=keras_ms,
    )


def judge(checks: Checks, fmt: str, quantize: str, allow_drop: float | None = None) -> None:
    """A float export that differs from Keras beyond float rounding, or a quantized one that
    loses more than `allow_drop` points (default ALLOWED_DROP), is an error."""
    differ = round((1 - checks.agreement) * checks.images)
    if quantize == "none":
        if not checks.max_prob_diff <= FLOAT_TOLERANCE:  # NaN probabilities fail too
            raise ExportError(
                f"the {fmt} export does not answer as the Keras model does: largest probability "
                f"difference {checks.max_prob_diff:.2g} (float rounding is below "
                f"{FLOAT_TOLERANCE:g}), {differ} of {checks.images:,} predictions differ; "
                "nothing was written"
            )
        return
    allowed = ALLOWED_DROP if allow_drop is None else allow_drop
    if not checks.accuracy_drop <= allowed:  # a NaN limit or drop passes nothing
        raise ExportError(
            f"the {quantize} {fmt} export loses {checks.accuracy_drop:.2f} points of test "
            f"accuracy ({checks.keras_accuracy:.4f} -> {checks.export_accuracy:.4f}), more than "
            f"the {allowed:g} allowed: pass --allow-drop {checks.accuracy_drop:.2f} to keep it, "
            "or export another --quantize; nothing was written"
        )


def export_checked(
    model,
    fmt: str,
    quantize: str,
    path: str | Path,
    x: np.ndarray,
    labels: np.ndarray,
    keras_probs: np.ndarray,
    card: ModelCard | None = None,
    calibration: np.ndarray | None = None,
    allow_drop: float | None = None,
    time_keras: bool = False,
    before_replace: Callable[[], None] | None = None,
) -> Export:
    """Convert, check on the test set against Keras, judge; only then put it at `path`
    (`before_replace` checks, just before, that what is there may be replaced)."""
    path, model = Path(path), float32_copy(model)
    try:
        with atomic_export(path, fmt, before_replace) as tmp:
            write_export(model, fmt, quantize, tmp, export_card(card, fmt, quantize), calibration)
            checks = check(tmp, x, labels, keras_probs, model if time_keras else None)
            judge(checks, fmt, quantize, allow_drop)
    except OSError as exc:
        raise files.write_error(exc, path, f"the {fmt} export", advise=True) from None
    return Export(fmt, quantize, path, checks.bytes, checks)
