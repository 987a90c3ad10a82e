"""The saved-model opened: the one door to a model file, one opening, its card read once,
every format, no TensorFlow until a Keras model is asked for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.stages import handle
from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.save import save_model

REPO = Path(__file__).resolve().parent.parent


def test_handle_reads_what_save_stored(tiny_trained):
    model_path, result = tiny_trained
    opened = handle.open_saved(model_path)
    assert opened.format == "h5" and opened.is_keras
    assert opened.card == handle.card_of(model_path)
    assert opened.run_id == opened.card.run_id == result.run_id
    assert opened.class_names == opened.card.class_names == DIGITS
    assert opened.dataset == opened.card.dataset == "mnist"
    assert opened.card.config["data"]["normalize"] is True
    assert opened.normalize is True and opened.input_shape == (28, 28, 1)
    assert opened.params == opened.keras_model().count_params()
    assert handle.open_saved(opened) is opened


def test_keras_model_is_loaded_once(tiny_trained):
    opened = handle.open_saved(tiny_trained[0])
    first = opened.keras_model()
    assert opened.keras_model() is first
    assert first.input_shape[1:] == (28, 28, 1)


def test_predictor_uses_the_checked_litert_beside(tiny_trained, tmp_path):
    model_path, _ = tiny_trained
    opened = handle.open_saved(model_path)
    assert opened.litert_beside() == Path(model_path).with_suffix(".tflite")
    assert opened.predictor()[1] == "litert"
    assert opened.predictor(fast=False)[1] == "keras"
    copy = tmp_path / "alone.h5"
    shutil.copy(model_path, copy)  # no .tflite beside it
    assert handle.open_saved(copy).predictor()[1] == "keras"


def test_opening_reads_metadata_without_tensorflow(tiny_trained):
    """The CLI checks and names classes before TensorFlow is imported."""
    code = (
        "import sys; from cnn_mnist.stages.handle import open_saved; "
        f"h = open_saved({str(tiny_trained[0])!r}); "
        "print(h.class_names[3], h.dataset, h.run_id is not None, h.litert_beside() is not None);"
        "p, b = h.predictor(); print(b, p(__import__('numpy').zeros((2, 28, 28, 1))).shape);"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["3", "mnist", "True", "True", "litert", "(2,", "10)", "False"]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p, "model file not found"),
        (lambda p: (p.mkdir(), p)[1], "expected a Keras model file ending in .h5 or .keras"),
    ],
)
def test_bad_paths(tmp_path, make, expected):
    with pytest.raises(ModelFileError, match=expected):
        handle.open_saved(make(tmp_path / "m.h5"))


def test_unknown_suffix_and_empty_files(tmp_path):
    (tmp_path / "m.pt").write_text("x")
    with pytest.raises(ModelFileError, match=r"m.pt: expected a Keras model file .*\.onnx"):
        handle.open_saved(tmp_path / "m.pt")
    (tmp_path / "m.tflite").write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        handle.open_saved(tmp_path / "m.tflite")


def test_corrupt_exports_say_so(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelFileError, match="m.onnx: not a readable ONNX model"):
        handle.open_saved(tmp_path / "m.onnx")
    (tmp_path / "m.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="m.tflite: not a readable LiteRT model"):
        handle.open_saved(tmp_path / "m.tflite")  # as it is opened, as an .onnx is


def test_an_export_has_no_keras_model(tiny_trained):
    lite = handle.open_saved(Path(tiny_trained[0]).with_suffix(".tflite"))
    assert lite.format == "litert" and not lite.is_keras
    with pytest.raises(
        ModelFileError,
        match=r"feature maps needs a Keras model \(.h5 or .keras\)"
        r"; this is a LiteRT \(.tflite\) export",
    ):
        lite.keras_model("feature maps")


def test_litert_card_reads_the_flatbuffer(tiny_trained, tmp_path):
    """`cnn train`'s .tflite carries the model's card; one without any reads as an empty one."""
    from cnn_mnist.stages.save import export_litert

    model_path, result = tiny_trained
    data = Path(model_path).with_suffix(".tflite").read_bytes()
    card = handle.litert_card(data)
    assert card.run_id == result.run_id and card.input_shape == [28, 28, 1]
    assert json.dumps(card.config) == json.dumps(handle.open_saved(model_path).card.config)
    plain = export_litert(handle.open_saved(model_path).keras_model(), tmp_path / "plain.tflite")
    assert handle.litert_card(plain.read_bytes()).to_json() == {}
    lite, _ = handle.open_saved(plain).predictor()
    assert lite(np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 10)


# --- Keras models: loaded by the opened, refused with one line -------------------------------


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found.*cnn train"):
        handle.open_saved(tmp_path / "none.h5")


def test_not_a_model(tmp_path):
    (tmp_path / "notes.h5").write_text("hello")
    opened = handle.open_saved(tmp_path / "notes.h5")  # no card: read as a model without one
    assert opened.card.to_json() == {} and opened.params is None
    with pytest.raises(ModelFileError, match="notes.h5: not a readable Keras model"):
        opened.keras_model()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFileError, match="ending in .h5 or .keras"):
        handle.open_saved(tmp_path / "notes.txt")


def test_truncated_model(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.h5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        handle.open_saved(path).keras_model()


@pytest.mark.parametrize(
    "shape, units, expected",
    [
        ((32, 32, 3), 10, r"inputs of shape \(32, 32, 3\), expected \(28, 28, 1\)"),
        ((28, 28, 1), 3, r"outputs of shape \(3,\), expected \(10,\)"),
    ],
)
def test_not_a_digit_classifier(tmp_path, shape, units, expected):
    import keras

    other = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(units)]
    )
    path = save_model(other, tmp_path / "other.h5")
    with pytest.raises(ModelFileError, match=expected):
        handle.open_saved(path).keras_model()


def test_empty_model_file(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        handle.open_saved(tmp_path / "empty.h5")
    assert handle.card_of(tmp_path / "empty.h5").to_json() == {}  # nothing to read, no error


# --- what a model is, from its card or what the file shows ------------------------------------


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_params_are_read_from_the_file(tmp_path, tiny_model, name):
    path = save_model(tiny_model, tmp_path / name)
    assert handle.open_saved(path).params == tiny_model.count_params()


def test_class_names_and_dataset_of_a_model(tmp_path, tiny_model):
    old = save_model(tiny_model, tmp_path / "old.h5")  # no card: an older model
    opened = handle.open_saved(old)
    assert opened.class_names == DIGITS and opened.dataset == "mnist" and opened.normalize
    assert opened.run_id is None and opened.input_shape == (28, 28, 1)
    names = [f"kana {k}" for k in range(10)]
    new = save_model(
        tiny_model, tmp_path / "new.keras", ModelCard(dataset="custom", class_names=names)
    )
    assert handle.open_saved(new).class_names == names
    assert handle.open_saved(new).dataset == "custom"
    # Only the config (a best.h5 from an earlier version): its dataset still counts.
    card = ModelCard(config={"data": {"dataset": "fashion_mnist", "normalize": False}})
    best = handle.open_saved(save_model(tiny_model, tmp_path / "best.h5", card))
    assert best.dataset == "fashion_mnist" and best.normalize is False


def test_class_names_are_the_digits_unless_stored(tmp_path, tiny_model):
    plain = save_model(tiny_model, tmp_path / "plain.h5", ModelCard(run_id="x"))
    assert handle.open_saved(plain).class_names == DIGITS
    named = save_model(tiny_model, tmp_path / "named.h5", ModelCard(class_names=list("abcdefghij")))
    assert handle.open_saved(named).class_names == list("abcdefghij")
    short = save_model(tiny_model, tmp_path / "short.h5", ModelCard(class_names=list("abc")))
    assert handle.open_saved(short).class_names == DIGITS  # not ten: not this model's names


def test_a_card_from_elsewhere_reads_what_it_can(tmp_path, tiny_model):
    """Fields of another type read as missing; fields this version does not know are kept."""
    import h5py

    path = save_model(tiny_model, tmp_path / "m.h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["cnn_mnist"] = json.dumps(
            {"run_id": "r", "class_names": "0123456789", "config": None, "epoch": 4}
        )
    opened = handle.open_saved(path)
    assert opened.card.to_json() == {"run_id": "r", "config": None, "epoch": 4}
    assert opened.class_names == DIGITS and opened.dataset == "mnist" and opened.normalize
    with h5py.File(path, "a") as h5:
        h5.attrs["cnn_mnist"] = "not json"
    assert handle.open_saved(path).card.to_json() == {}
