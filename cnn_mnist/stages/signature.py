"""Whether a saved model is a classifier of its dataset: one input, a batch of 28x28x1 float32
pixels, and one output of probabilities, one per class.

The model's handle (handle.SavedModel) checks every format here, once, before any prediction:
the input from what its runtime declares (ONNX Runtime's session, LiteRT's interpreter, a
SavedModel's signature; the handle checks a Keras model's as it loads it), the output from one
prediction on a blank digit and one on noise, which must be probabilities (a softmax output
layer). A model that takes or gives something else is refused with one line naming what it
has and what is expected, never a runtime's traceback, and never read as a digit classifier.
No runtime here: the callers hand in what their runtime declares, and a predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.stages.save import EXPECTED_INPUT

# How far from 1 the probabilities may sum: a float32 softmax sums to 1 within ~1e-6. An int8
# export's (`cnn export --quantize int8`) are each rounded to 1/256: measured 0.02 off, on a
# blank digit, for the lecture's model in ONNX (0.008 in LiteRT).
TOLERANCE = 1e-3
INT8_TOLERANCE = 0.05
GOLDEN = (5**0.5 - 1) / 2

Shape = tuple[int | None, ...]


def dims(shape: Sequence[Any]) -> Shape:
    """A shape as a runtime declares it, its dynamic dimensions (None, -1, a symbolic name
    like ONNX's "unk__31" or "N") as None."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape)


def onnx_dtype(name: str) -> str:
    """ONNX Runtime's "tensor(float)" as numpy names it: float32."""
    inner = name.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(inner, inner)


def _shown(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_input(path: str | Path, inputs: Sequence[tuple[Shape, str]]) -> None:
    """`inputs`: each input's shape (batch first, as `dims` gives it) and dtype. One input of a
    batch (of any size, or one at a time) of 28x28x1 float32 digits; a dimension the model
    leaves open is taken to fit."""
    if len(inputs) != 1:
        raise ModelFileError(
            f"{path}: the model takes {len(inputs)} inputs, expected one "
            "(a batch of 28x28 grayscale digits)"
        )
    shape, dtype = inputs[0]
    batch, rest = (shape[0], shape[1:]) if shape else (None, ())
    if len(rest) != len(EXPECTED_INPUT) or any(
        d not in (None, e) for d, e in zip(rest, EXPECTED_INPUT)
    ):
        raise ModelFileError(
            f"{path}: the model takes inputs of shape {_shown(rest)}, expected "
            f"{_shown(EXPECTED_INPUT)} (one 28x28 grayscale digit)"
        )
    if batch not in (None, 1):
        raise ModelFileError(
            f"{path}: the model takes batches of exactly {batch} digits, expected "
            "a batch of any size (or of one)"
        )
    if dtype != "float32":
        raise ModelFileError(
            f"{path}: the model takes {dtype} inputs, expected float32 pixels; "
            "export it with float32 inputs and outputs"
        )


def probes(normalize: bool = True) -> np.ndarray:
    """A blank digit and one of noise, fed as the model was trained to see pixels. The noise is
    the golden ratio's multiples modulo 1, spread evenly over [0, 1): the same every time, and
    without numpy's random generator, whose first use costs ~5 ms."""
    noise = np.modf(np.arange(np.prod(EXPECTED_INPUT)) * GOLDEN)[0].reshape(EXPECTED_INPUT)
    x = np.stack([np.zeros(EXPECTED_INPUT), noise]).astype(np.float32)
    return x if normalize else x * np.float32(255)


def check_outputs(
    path: str | Path,
    predictor: Callable[..., Any],
    classes: int,
    what: str = "MNIST",
    normalize: bool = True,
    tolerance: float = TOLERANCE,
) -> None:
    """`predictor` run on the two `probes`, one at a time (as a server predicts): it must give
    `classes` probabilities for each (in [0, 1], summing to 1 within `tolerance`). `what`:
    the dataset whose classes they are, as the message names it."""
    try:
        rows = [np.asarray(predictor(x[None], training=False)) for x in probes(normalize)]
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path}: the model could not predict one 28x28 digit ({reason})"
        ) from None
    if any(r.shape != (1, classes) for r in rows):
        raise ModelFileError(
            f"{path}: the model has outputs of shape {_shown(rows[0].shape[1:])}, expected "
            f"({classes},) (one probability per class of {what})"
        )
    values = np.concatenate(rows).astype(np.float64)
    sums = values.sum(axis=1)
    distance = np.where(np.isfinite(sums), np.abs(sums - 1), np.inf)
    if distance.max() > tolerance:
        reason = f"they sum to {sums[int(np.argmax(distance))]:.4g}, not 1"
    elif values.min() < -tolerance or values.max() > 1 + tolerance:
        outside = values.min() if values.min() < -tolerance else values.max()
        reason = f"one is {outside:.4g}, not between 0 and 1"
    else:
        return
    raise ModelFileError(
        f"{path}: the model's outputs are not probabilities ({reason}): "
        "expected a softmax output layer"
    )
