"""`cnn evaluate`'s library: a saved model on its whole test set, its results written as files.

The measuring itself is the evaluate stage's (stages/evaluate.py), as `cnn train` does it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cnn_mnist.core import files, paths
from cnn_mnist.core.stamps import new_run_id
from cnn_mnist.stages.data import load_for_model, prepare_images
from cnn_mnist.stages.evaluate import Evaluation, confusion_png, evaluate, mistakes_png
from cnn_mnist.stages.handle import open_saved


@dataclass
class Report:
    """`cnn evaluate`'s result: the evaluation, where its files went, and what was evaluated."""

    evaluation: Evaluation
    paths: dict[str, Path]  # confusion_matrix_png, confusion_matrix_json, mistakes_png
    model_path: Path
    source: str  # where the test images came from


def evaluate_model(
    model_path: str | Path,
    data_path: str | None = None,
    out_dir: str | Path | None = None,
    *,
    verbose: bool = False,
    dataset: str | None = None,
    overwrite: bool = False,
) -> Report:
    """The saved model on the whole test set, fed as it was trained (see
    handle.SavedModel.normalize), its classes named as its dataset names them; files go to `out_dir`
    (default logs/evaluate/<time>/). The test data is read as the model's dataset (or
    `dataset`); test data of another dataset than the model's is refused."""
    out = Path(out_dir or Path(paths.EVALUATE_DIR) / new_run_id())
    files.check_place(out, "evaluation results", "--out")  # made only when they are written
    for name in OUTPUTS.values():
        files.check_target(
            out / name, what="evaluation result", ours=_ours, overwrite=overwrite, option="--out"
        )
    saved = open_saved(model_path)  # the cheap checks come before TensorFlow is imported
    names = saved.class_names
    mnist = load_for_model(data_path, saved.dataset, dataset, f"model {model_path}")
    model, _ = saved.predictor(verbose=verbose, fast=False)  # Keras for a Keras model
    labels = mnist.y_test.astype("int64")
    ev = evaluate(
        model, prepare_images(mnist.x_test, normalize=saved.normalize), labels, class_names=names
    )
    pictures = {
        "confusion_matrix_png": confusion_png(ev.confusion, class_names=ev.class_names),
        "confusion_matrix_json": (json.dumps(ev.to_dict(), indent=2) + "\n").encode(),
        "mistakes_png": mistakes_png(
            mnist.x_test / 255.0, labels, ev.probabilities, class_names=names
        ),
    }
    written = {
        key: files.write_output(
            out / OUTPUTS[key],
            data,
            what="evaluation result",
            option="--out",
            overwrite=overwrite,
            ours=_ours,
        )
        for key, data in pictures.items()
    }
    return Report(ev, written, Path(model_path), mnist.source)


OUTPUTS = {
    "confusion_matrix_png": "confusion_matrix.png",
    "confusion_matrix_json": "confusion_matrix.json",
    "mistakes_png": "mistakes.png",
}


def _ours(path: Path) -> bool:
    """An evaluation result this tool wrote: a marked PNG, or the confusion matrix's JSON."""
    if path.suffix != ".json":
        return files.written_by_us(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("confusion_matrix"), dict)
