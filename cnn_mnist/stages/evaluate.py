"""Step 6, evaluate: test loss and accuracy, the confusion matrix, per-class precision and recall.

Classes are named as the model's dataset names them (its card, handle.py); for MNIST they are the
digits, and every table and picture is as it always was."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnn_mnist.analysis.figures import Tile, digits_png, png_bytes, pyplot
from cnn_mnist.core import files
from cnn_mnist.core.datasets import DIGITS

LABELS = list(range(10))  # the classes' numbers, 0 to 9


def _digits(names: list[str] | None) -> bool:
    """MNIST's classes are its digits: its tables and pictures stay as they always were."""
    return not names or list(names) == DIGITS


@dataclass
class Evaluation:
    """Everything measured on the test set; `confusion[i, j]` counts class i predicted as j;
    `class_names` names classes 0 to 9 (the digits for MNIST)."""

    loss: float
    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=lambda: list(DIGITS))

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def to_dict(self) -> dict:
        what = "digit" if _digits(self.class_names) else "class"
        return {
            "test_loss": self.loss,
            "test_accuracy": self.accuracy,
            "num_test_images": int(self.confusion.sum()),
            "class_names": list(self.class_names),
            "confusion_matrix": {
                "rows": f"true {what}",
                "columns": f"predicted {what}",
                "labels": LABELS,
                "counts": self.confusion.tolist(),
            },
            "per_class": {
                str(d): {
                    "precision": float(self.precision[d]),
                    "recall": float(self.recall[d]),
                    "f1": float(self.f1[d]),
                    "support": int(self.support[d]),
                }
                for d in LABELS
            },
        }


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int = 10
) -> np.ndarray:
    """Rows are true labels, columns predictions (as tf.math.confusion_matrix)."""
    flat = labels.astype(np.int64) * num_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class; 0 where a class has no predictions."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1, support


def crossentropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean categorical cross-entropy, computed as Keras does (normalize, clip to 1e-7)."""
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


# Inference batches: larger ones gain nothing on a CPU, and at 1,000 images this model's
# convolution outputs alone take 250 MB.
BATCH = 256


def predict_probabilities(model, x: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Class probabilities for every image: the model called directly on each batch.

    `model.predict` has a large fixed cost per call; this also works for a LiteRT model.
    """
    out = [
        np.asarray(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 10))


def traced(model):
    """A Keras model's forward pass as a tf.function: over the test set, about twice as fast as
    eager calls. Anything else (a LiteRT model) is returned as it is."""
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, keras.Model):
        return model
    import tensorflow as tf

    return tf.function(lambda x, training=False: model(x, training=False), reduce_retracing=True)


def evaluate(
    model,
    x: np.ndarray,
    labels: np.ndarray,
    batch_size: int = BATCH,
    class_names: list[str] | None = None,
) -> Evaluation:
    """One pass over the test set gives loss, accuracy and the confusion matrix together."""
    return from_probabilities(
        predict_probabilities(traced(model), x, batch_size), labels, class_names
    )


def from_probabilities(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None
) -> Evaluation:
    """The evaluation of predictions already made (by `evaluate`, or during training)."""
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted)
    precision, recall, f1, support = per_class(confusion)
    return Evaluation(
        loss=crossentropy(probabilities, labels),
        accuracy=float((predicted == labels).mean()),
        confusion=confusion,
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        probabilities=probabilities,
        labels=labels,
        class_names=list(class_names or DIGITS),
    )


def format_confusion(confusion: np.ndarray, class_names: list[str] | None = None) -> str:
    """The 10x10 matrix as an aligned table: rows true class, columns predicted (by number,
    where the classes have names)."""
    width = max(4, len(str(confusion.max())) + 1)
    labels, left = _row_labels(class_names, 9)
    head = "true\\pred".ljust(left) + "".join(f"{d:>{width}}" for d in LABELS)
    rows = [
        label + "".join(f"{n:>{width}}" for n in confusion[d]) for d, label in zip(LABELS, labels)
    ]
    return "\n".join([head, *rows])


def _row_labels(class_names: list[str] | None, least: int) -> tuple[list[str], int]:
    """A table's row labels and their width: the digit right-aligned for MNIST, as always;
    "number name", left-aligned, for named classes."""
    if class_names is None or _digits(class_names):
        return [f"{d:>{least}}" for d in LABELS], least
    labels = [f"{d} {name}" for d, name in zip(LABELS, class_names)]
    left = max(least, *map(len, labels))
    return [label.ljust(left) for label in labels], left


def format_report(evaluation: Evaluation, tables: bool = True) -> str:
    """The confusion matrix and per-class metrics (if `tables`), then test loss and accuracy."""
    ev = evaluation
    line = (
        f"Test loss {ev.loss:.4f}, test accuracy {ev.accuracy:.4f} "
        f"({int(ev.confusion.trace()):,} of {int(ev.confusion.sum()):,})"
    )
    if not tables:
        return line
    what = (
        "rows: true digit, columns: predicted"
        if _digits(ev.class_names)
        else "rows: true class, columns: predicted class, by number"
    )
    return (
        f"Confusion matrix ({what})\n"
        f"{format_confusion(ev.confusion, ev.class_names)}\n\n{format_per_class(ev)}\n\n{line}"
    )


def format_per_class(evaluation: Evaluation) -> str:
    """Precision, recall and F1 per class (per digit for MNIST), aligned."""
    labels, left = _row_labels(evaluation.class_names, 5)
    what = "digit" if _digits(evaluation.class_names) else "class"
    lines = [f"{what:<{left}}  precision  recall      f1  support"]
    for d, label in zip(LABELS, labels):
        lines.append(
            f"{label}  {evaluation.precision[d]:>9.4f}  {evaluation.recall[d]:>6.4f}  "
            f"{evaluation.f1[d]:>6.4f}  {evaluation.support[d]:>7}"
        )
    return "\n".join(lines)


def confusion_png(
    confusion: np.ndarray, title: str = "Confusion matrix", class_names: list[str] | None = None
) -> bytes:
    """A labelled heat map with the counts in the cells, as PNG bytes."""
    plt = pyplot()
    digits = _digits(class_names)
    fig, ax = plt.subplots(figsize=(7, 6) if digits else (8.5, 7.5), dpi=100)
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    what = "digit" if digits else "class"
    ax.set(
        xticks=LABELS, yticks=LABELS, xlabel=f"Predicted {what}", ylabel=f"True {what}", title=title
    )
    if not digits:
        ax.set_xticklabels(class_names, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticklabels(class_names)
    threshold = confusion.max() / 2
    for i in LABELS:
        for j in LABELS:
            ax.text(
                j,
                i,
                str(confusion[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if confusion[i, j] > threshold else "black",
            )
    fig.tight_layout()
    return png_bytes(plt, fig)


def worst_mistakes(labels: np.ndarray, probs: np.ndarray, count: int = 25) -> np.ndarray:
    """Indices of the wrong predictions, the most confident first."""
    predicted = probs.argmax(axis=1)
    wrong = np.nonzero(predicted != labels)[0]
    return wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]


def mistakes_png(
    images: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    count: int = 25,
    class_names: list[str] | None = None,
) -> bytes:
    """A grid of the most confident mistakes: image, true label, prediction, confidence."""
    names = list(class_names or DIGITS)
    predicted = probs.argmax(axis=1)
    return digits_png(
        [
            Tile(
                images[i],
                f"#{i}: predicted {names[predicted[i]]} "
                f"({probs[i, predicted[i]]:.0%})\ntrue label "
                f"{names[labels[i]]}",
                wrong=True,
            )
            for i in worst_mistakes(labels, probs, count)
        ],
        empty="no mistakes",
    )


def save_results(evaluation: Evaluation, folder: Path) -> dict[str, Path]:
    """confusion_matrix.png and confusion_matrix.json (with per-class metrics) in `folder`."""
    png = files.write_bytes(
        folder / "confusion_matrix.png",
        confusion_png(evaluation.confusion, class_names=evaluation.class_names),
    )
    data = files.write_json(folder / "confusion_matrix.json", evaluation.to_dict())
    return {"confusion_matrix_png": png, "confusion_matrix_json": data}


def log_to_tensorboard(evaluation: Evaluation, png: Path, log_dir: Path, step: int) -> None:
    """The confusion-matrix image and test metrics, in the run's `evaluation` folder."""
    import tensorflow as tf

    with tf.summary.create_file_writer(str(log_dir / "evaluation")).as_default():
        image = tf.image.decode_png(png.read_bytes(), channels=4)[tf.newaxis]
        tf.summary.image("confusion_matrix", image, step=step)
        tf.summary.scalar("test_loss", evaluation.loss, step=step)
        tf.summary.scalar("test_accuracy", evaluation.accuracy, step=step)
        tf.summary.text(
            "confusion_matrix_table",
            "```\n" + format_confusion(evaluation.confusion, evaluation.class_names) + "\n```",
            step=step,
        )
