"""Step 8: use the model: predict test digits by index, or your own pictures.

Predictions are named by the model's class names (its card, handle.py): the digits for MNIST."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from cnn_mnist.analysis import figures
from cnn_mnist.analysis.figures import Tile, digits_png
from cnn_mnist.analysis.images import ImageError, digit_png, load_digit
from cnn_mnist.analysis.number_reading import read_number
from cnn_mnist.core import files
from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.core.errors import OutputError
from cnn_mnist.stages.data import BadIndex, check_indices, load_for_model
from cnn_mnist.stages.evaluate import predict_probabilities
from cnn_mnist.stages.handle import open_saved

log = logging.getLogger(__name__)

Item = TypeVar("Item")  # what Predictions holds for each input

# What a folder given to --image is searched for (Pillow reads them all).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Prediction:
    """One input and what the model made of it."""

    digit: np.ndarray  # 28x28 in [0, 1], as the model saw it (before any 0-255 scaling)
    probabilities: np.ndarray  # 10 values
    index: int | None = None
    image: str | None = None
    label: int | None = None
    class_names: list[str] = field(default_factory=lambda: list(DIGITS))  # label 0 to 9

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
    def class_name(self) -> str:
        return self.class_names[self.predicted]

    @property
    def name(self) -> str:
        return f"index {self.index}" if self.index is not None else str(self.image)

    def to_dict(self) -> dict:
        out: dict = {"index": self.index} if self.index is not None else {"image": self.image}
        out.update(
            predicted=self.predicted,
            class_name=self.class_name,
            probability=round(self.probability, 6),
            top3=[
                {"digit": d, "class_name": self.class_names[d], "probability": round(p, 6)}
                for d, p in self.top3
            ],
        )
        if self.label is not None:
            out["label"] = self.label
            out["label_class_name"] = self.class_names[self.label]
        return out


def parse_indices(specs: list[str] | tuple[str, ...]) -> list[int]:
    """ "10", "10:20" (10 to 19, like Python) -> indices; syntax only, range comes later."""
    indices: list[int] = []
    for spec in specs:
        text = spec.strip()
        start, colon, stop = text.partition(":")
        try:
            if colon:
                first, last = int(start), int(stop)
                if last <= first:
                    raise BadIndex(
                        f"--index {spec}: a range START:STOP needs STOP > START "
                        "(10:20 means 10 to 19)"
                    )
                indices.extend(range(first, last))
            else:
                indices.append(int(text))
        except ValueError:
            raise BadIndex(
                f"--index {spec!r}: not a number; expected N or START:STOP, "
                "for example --index 10 or --index 10:20"
            ) from None
    return indices


def open_model(
    model_path: str | Path, verbose: bool = False, threads: int | None = None, saved=None
):
    """The fastest way to run a saved model: (predictor, backend). A Keras model runs on its
    LiteRT export if there, else on Keras; an export on its own runtime (handle.SavedModel).

    `threads`: LiteRT's threads (default: one per core). A server predicting one digit per call
    wants 1: bench/serve.py on 2 cores went from 245 to 268 requests/s with it.
    `saved`: the model's handle where the caller has opened it already."""
    return (saved or open_saved(model_path)).predictor(threads, verbose)


def probabilities(model, digits: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Probabilities for 28x28 digits in [0, 1], fed as the model was trained to see them."""
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
    names = p.class_names
    others = ", ".join(f"{names[d]} {_percent(q)}" for d, q in p.top3[1:])
    line = f"{p.name}: predicted {p.class_name} ({_percent(p.probability)}; then {others})"
    if p.label is not None:
        line += f", true label {names[p.label]}" + ("" if p.label == p.predicted else "  <- wrong")
    return line


def tile(p: Prediction) -> Tile:
    """The digit with its prediction and true label, for a picture."""
    title = f"predicted {p.class_name} ({p.probability:.0%})"
    if p.index is not None:
        title = f"#{p.index}: {title}"
    elif p.image is not None:
        title = f"{Path(p.image).name}\n{title}"
    if p.label is not None:
        title += f"\ntrue label {p.class_names[p.label]}"
    return Tile(p.digit, title, wrong=p.label not in (None, p.predicted))


def figure_png(predictions: list[Prediction]) -> bytes:
    """The digits with prediction and true label in each title, as PNG bytes."""
    return digits_png([tile(p) for p in predictions])


def show(predictions: list[Prediction]) -> bool:
    """Open a window with the digits; False where there is no display to open it on."""
    return figures.show([tile(p) for p in predictions])


def expand_images(paths: list[str] | tuple[str, ...]) -> list[str]:
    """Pictures as the user named them: files as given, a folder as its pictures in name order."""
    found: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(str(path))
            continue
        inside = sorted(
            str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not inside:
            raise ImageError(
                f"{path}/: no pictures in this folder (looked for "
                f"{', '.join(IMAGE_SUFFIXES)}); give picture files or another folder"
            )
        found += inside
    return found


@dataclass
class Predictions(Generic[Item]):
    """What `cnn predict` made of its inputs (a Prediction per digit, or with --number a dict
    per picture), and the pictures it could not read."""

    items: list[Item]
    failed: list[str] = field(default_factory=list)  # one message per unreadable picture


def predict(
    indices=(),
    images=(),
    *,
    model_path: str | Path = "",
    data_path: str | None = None,
    verbose: bool = False,
    save_image: str | None = None,
    save_preprocessed: str | None = None,
    dataset: str | None = None,
    overwrite: bool = False,
) -> Predictions[Prediction]:
    """Test items by index (`indices` as typed: "10", "10:20") and the user's pictures (files
    or folders), through the model at `model_path`. The test data is read as the model's
    dataset (or `dataset`), and refused if it is another. Everything typed is checked before
    TensorFlow is imported; an unreadable picture is reported and the others go on."""
    check_outputs(save_image, save_preprocessed)
    wanted = parse_indices(indices)
    # Each input as (digit, index, label, image); its Prediction is made with its probabilities.
    inputs: list[tuple[np.ndarray, int | None, int | None, str | None]] = []
    there = Path(model_path).is_file() or (Path(model_path) / "saved_model.pb").is_file()
    handle = open_saved(model_path) if there else None  # a missing one is reported below
    names = handle.class_names if handle else list(DIGITS)
    if wanted:
        model_dataset = handle.dataset if handle else "mnist"
        mnist = load_for_model(data_path, model_dataset, dataset, f"model {model_path}")
        check_indices(wanted, len(mnist.x_test))
        inputs += [
            (mnist.x_test[i] / np.float32(255), i, int(mnist.y_test[i]), None) for i in wanted
        ]
    handle = handle or open_saved(model_path)  # not found, or not a model: says which
    failed = []
    for path in expand_images(images):
        try:
            inputs.append((load_digit(path), None, None, path))
        except ImageError as exc:
            failed.append(str(exc))
    items: list[Prediction] = []
    if inputs:
        model, backend = open_model(model_path, verbose, saved=handle)
        log.debug("Predicting with %s", backend)
        rows = probabilities(model, np.stack([i[0] for i in inputs]), normalize=handle.normalize)
        items = [
            Prediction(
                digit=digit,
                probabilities=row,
                index=index,
                image=image,
                label=label,
                class_names=names,
            )
            for (digit, index, label, image), row in zip(inputs, rows)
        ]
        save_pictures(items, save_image, save_preprocessed, overwrite)
    return Predictions(items, failed)


def check_outputs(save_image: str | None, save_preprocessed: str | None) -> None:
    """The places of --save-image and --save-preprocessed, checked before any work (nothing
    is made yet: a refusal later leaves no empty folder)."""
    if save_image:
        files.check_place(Path(save_image).parent, "picture", "--save-image", save_image)
        if Path(save_image).is_dir():
            raise OutputError(f"--save-image {save_image} is a folder; name a .png file")
    if save_preprocessed:
        files.check_place(save_preprocessed, "28x28 inputs", "--save-preprocessed")


def save_input(digit: np.ndarray, folder: str, name: str, overwrite: bool) -> Path:
    """One 28x28 input as the model saw it, `name`.png in --save-preprocessed's folder."""
    return files.write_output(
        Path(folder) / f"{name}.png",
        digit_png(digit),
        what="28x28 input",
        option="--save-preprocessed",
        overwrite=overwrite,
    )


def save_pictures(
    items: list[Prediction],
    save_image: str | None,
    save_preprocessed: str | None,
    overwrite: bool = False,
) -> None:
    """--save-image: one figure of the digits; --save-preprocessed: each 28x28 input as PNG.
    A file there that this tool did not write is replaced only with `overwrite`."""
    if save_preprocessed:
        for n, p in enumerate(items):
            name = f"{n:03d}-{Path(p.image).stem}" if p.image is not None else f"index-{p.index}"
            save_input(p.digit, save_preprocessed, name, overwrite)
        log.info("Inputs as the model saw them: %s", Path(save_preprocessed))
    if save_image:
        files.write_output(
            save_image,
            figure_png(items),
            what="picture",
            option="--save-image",
            overwrite=overwrite,
        )
        log.info("Picture saved to %s", save_image)


def format_predictions(items: list[Prediction], as_json: bool = False, draw: bool = False) -> str:
    """JSON, or a line per input (after each digit in block characters, if `draw`)."""
    if as_json:
        return json.dumps([p.to_dict() for p in items], indent=2)
    drawn = [render(p.digit) for p in items] if draw else []
    return "\n".join([*drawn, *(describe(p) for p in items)])


def read_number_with(
    model, digits: list, normalize: bool = True, names: list[str] | None = None
) -> dict:
    """One picture's digits (number_reading.read_number: each a 28x28 `digit` and its `box`)
    through `model` (a predictor or a Keras model): `number`, the predicted names joined, and
    per digit `predicted`, `class_name`, `probability` and `box` (left, top, right, bottom in
    the picture's pixels), left to right. The one reading of a number: `cnn predict --number`
    and `cnn serve`'s /api/number both come here."""
    names = list(names or DIGITS)
    rows = probabilities(model, np.stack([d.digit for d in digits]), normalize=normalize)
    read: list[dict] = [
        {
            "predicted": int(r.argmax()),
            "class_name": names[int(r.argmax())],
            "probability": round(float(r.max()), 6),
            "box": [int(v) for v in d.box],
        }
        for d, r in zip(digits, rows)
    ]
    return {"number": "".join(r["class_name"] for r in read), "digits": read}


def classifier(model, normalize: bool = True):
    """`model` as number_reading's `classify`: 28x28 digits in [0, 1] -> class probabilities
    (it splits a 1 from the digit it touches where the two read more surely than the whole)."""
    return lambda digits: probabilities(model, digits, normalize=normalize)


NUMBER_DIGIT_KEYS = ("predicted", "probability", "box")  # what --number --json gives per digit


def predict_numbers(
    images=(),
    model_path: str | Path = "",
    verbose: bool = False,
    save_preprocessed: str | None = None,
    overwrite: bool = False,
) -> Predictions[dict]:
    """Each picture read as a number (number_reading.read_number, then read_number_with): one
    dict per picture, `number` and its `digits` (predicted, probability, box: left, top, right,
    bottom in the picture). The model is any that `predict` takes (its handle, opened once)."""
    check_outputs(None, save_preprocessed)
    handle = open_saved(model_path)  # not found, not a model, not a digit classifier: says which
    paths = expand_images(images)
    model, backend = open_model(model_path, verbose, saved=handle)
    log.debug("Reading numbers with %s", backend)
    normalize, names = handle.normalize, handle.class_names
    classify = classifier(model, normalize)
    found, failed = [], []
    for path in paths:
        try:
            found.append((path, read_number(path, classify=classify)))
        except ImageError as exc:
            failed.append(str(exc))
    items = []
    for n, (path, digits) in enumerate(found):
        read = read_number_with(model, digits, normalize, names)
        items.append(
            {
                "image": path,
                "number": read["number"],
                "digits": [{k: d[k] for k in NUMBER_DIGIT_KEYS} for d in read["digits"]],
            }
        )
        if save_preprocessed:
            for k, d in enumerate(digits):
                save_input(d.digit, save_preprocessed, f"{n:03d}-{Path(path).stem}-{k}", overwrite)
    return Predictions(items, failed)


def format_numbers(items: list[dict], as_json: bool = False) -> str:
    """JSON (one object, or a list for several pictures), or a line per picture."""
    if as_json:
        return json.dumps(items[0] if len(items) == 1 else items, indent=2)
    return "\n".join(
        f"{it['image']}: {it['number']}  ("
        + ", ".join(f"{d['predicted']} {_percent(d['probability'])}" for d in it["digits"])
        + ")"
        for it in items
    )
