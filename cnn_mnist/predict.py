"""Stage 7: use the model: predict test digits by index, or your own pictures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_mnist.errors import CnnError


class BadIndex(CnnError):
    """An --index that is not a number, negative, or past the end of the test set."""

    exit_code = 2


@dataclass
class Prediction:
    """One input and what the model made of it."""

    digit: np.ndarray  # 28x28 in [0, 1], as the model saw it (before any 0-255 scaling)
    probabilities: np.ndarray  # 10 values
    index: int | None = None
    image: str | None = None
    label: int | None = None

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def probability(self) -> float:
        return float(self.probabilities.max())

    @property
    def top3(self) -> list[tuple[int, float]]:
        order = np.argsort(-self.probabilities, kind="stable")[:3]
        return [(int(d), float(self.probabilities[d])) for d in order]

    @property
    def name(self) -> str:
        return f"index {self.index}" if self.index is not None else str(self.image)

    def to_dict(self) -> dict:
        out: dict = {"index": self.index} if self.index is not None else {"image": self.image}
        out.update(predicted=self.predicted, probability=round(self.probability, 6),
                   top3=[{"digit": d, "probability": round(p, 6)} for d, p in self.top3])
        if self.label is not None:
            out["label"] = self.label
        return out


def parse_indices(specs: list[str] | tuple[str, ...]) -> list[int]:
    """"10", "10:20" (10 to 19, like Python) -> indices; syntax only, range comes later."""
    indices: list[int] = []
    for spec in specs:
        text = spec.strip()
        start, colon, stop = text.partition(":")
        try:
            if colon:
                first, last = int(start), int(stop)
                if last <= first:
                    raise BadIndex(f"--index {spec}: a range START:STOP needs STOP > START "
                                      "(10:20 means 10 to 19)")
                indices.extend(range(first, last))
            else:
                indices.append(int(text))
        except ValueError:
            raise BadIndex(f"--index {spec!r}: not a number; expected N or START:STOP, "
                              "for example --index 10 or --index 10:20") from None
    return indices


def check_indices(indices: list[int], count: int) -> None:
    """Every index within the test set: 0 to count - 1."""
    for index in indices:
        if not 0 <= index < count:
            raise BadIndex(f"--index {index} is out of range: the test set has {count:,} "
                              f"images, so valid indices are 0 to {count - 1}")


class LiteRTModel:
    """A model exported by `cnn train` as .tflite, run by the LiteRT interpreter (no TensorFlow).

    Called like a Keras model on a batch; gives the same probabilities to float32 precision.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from cnn_mnist.runtime import stderr_captured

        with stderr_captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(model_path=str(path),
                                           num_threads=threads or os.cpu_count() or 1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        from cnn_mnist.runtime import stderr_captured

        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input, list(x.shape))
            with stderr_captured():
                self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def open_model(model_path: str | Path, verbose: bool = False):
    """The fastest way to run a saved model: its LiteRT export if there, else Keras."""
    from cnn_mnist.save import litert_beside, load_model

    lite = litert_beside(model_path)
    if lite is not None:
        try:
            return LiteRTModel(lite), "litert"
        except Exception:  # noqa: BLE001 - no LiteRT here, or a broken export: use Keras
            pass
    from cnn_mnist.runtime import import_tensorflow

    import_tensorflow(verbose)
    return load_model(model_path), "keras"


def probabilities(model, digits: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Probabilities for 28x28 digits in [0, 1], fed as the model was trained to see them."""
    from cnn_mnist.evaluate import predict_probabilities

    x = digits.reshape(-1, 28, 28, 1).astype(np.float32)
    if not normalize:
        x = x * np.float32(255.0)  # the model was trained on raw 0-255 pixels
    return predict_probabilities(model, x)


def render(digit: np.ndarray) -> str:
    """A 28x28 digit in block characters, two per pixel so it keeps its shape."""
    shades = " ░▒▓█"
    levels = np.clip((digit * (len(shades) - 1)).round().astype(int), 0, len(shades) - 1)
    return "\n".join("".join(shades[v] * 2 for v in row) for row in levels)


def _percent(q: float) -> str:
    return "<0.1%" if q < 0.001 else ">99.9%" if q > 0.999 else f"{q:.1%}"


def describe(p: Prediction) -> str:
    """One line: what it is, what the model says, how sure, runners-up, the truth."""
    others = ", ".join(f"{d} {_percent(q)}" for d, q in p.top3[1:])
    line = f"{p.name}: predicted {p.predicted} ({_percent(p.probability)}; then {others})"
    if p.label is not None:
        line += f", true label {p.label}" + ("" if p.label == p.predicted else "  <- wrong")
    return line


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _png(plt, fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def figure_png(predictions: list[Prediction]) -> bytes:
    """The digits with prediction and true label in each title, as PNG bytes."""
    plt = _pyplot()
    return _png(plt, _figure(plt, predictions))


def show(predictions: list[Prediction]) -> bool:
    """Open a matplotlib window; False where there is no display to open it on."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib.pyplot as plt

    if "agg" in plt.get_backend().lower():
        return False
    _figure(plt, predictions)
    plt.show()
    return True


def _figure(plt, predictions: list[Prediction]):
    columns = min(len(predictions), 8)
    rows = -(-len(predictions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, predictions):
        ax.imshow(p.digit, cmap="Greys")  # as the lecture shows it: dark ink on white
        title = f"predicted {p.predicted} ({p.probability:.0%})"
        if p.index is not None:
            title = f"#{p.index}: {title}"
        elif p.image is not None:
            title = f"{Path(p.image).name}\n{title}"
        if p.label is not None:
            title += f"\ntrue label {p.label}"
        ax.set_title(title, fontsize=9, color="black" if p.label in (None, p.predicted) else "red")
    fig.tight_layout()
    return fig


def mistakes_png(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, count: int = 25) -> bytes:
    """A grid of the most confident mistakes: image, true label, prediction, confidence."""
    predicted = probs.argmax(axis=1)
    wrong = np.nonzero(predicted != labels)[0]
    worst = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]
    predictions = [Prediction(digit=images[i], probabilities=probs[i], index=int(i),
                              label=int(labels[i])) for i in worst]
    if predictions:
        return figure_png(predictions)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return _png(plt, fig)
