"""The saved-model handle: one opening, metadata read once, every format, no TensorFlow until
a Keras model is asked for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.stages import saved
from cnn_mnist.core.errors import ModelFileError

REPO = Path(__file__).resolve().parent.parent


def test_handle_reads_what_save_stored(tiny_trained):
    from cnn_mnist.stages import save

    model_path, result = tiny_trained
    handle = saved.open_saved(model_path)
    assert handle.format == "h5" and handle.is_keras
    assert handle.metadata == save.read_metadata(model_path)
    assert handle.run_id == result.run_id
    assert handle.class_names == save.class_names(model_path)
    assert handle.dataset == save.dataset(model_path) == "mnist"
    assert handle.normalize is True and handle.input_shape == (28, 28, 1)
    assert saved.open_saved(handle) is handle


def test_keras_model_is_loaded_once(tiny_trained):
    handle = saved.open_saved(tiny_trained[0])
    first = handle.keras_model()
    assert handle.keras_model() is first
    assert first.input_shape[1:] == (28, 28, 1)


def test_predictor_uses_the_checked_litert_beside(tiny_trained, tmp_path):
    model_path, _ = tiny_trained
    handle = saved.open_saved(model_path)
    assert handle.litert_beside() == Path(model_path).with_suffix(".tflite")
    assert handle.predictor()[1] == "litert"
    assert handle.predictor(fast=False)[1] == "keras"
    copy = tmp_path / "alone.h5"
    shutil.copy(model_path, copy)  # no .tflite beside it
    assert saved.open_saved(copy).predictor()[1] == "keras"


def test_opening_reads_metadata_without_tensorflow(tiny_trained):
    """The CLI checks and names classes before TensorFlow is imported."""
    code = (
        "import sys; from cnn_mnist.stages.saved import open_saved; "
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
        saved.open_saved(make(tmp_path / "m.h5"))


def test_unknown_suffix_and_empty_files(tmp_path):
    (tmp_path / "m.pt").write_text("x")
    with pytest.raises(ModelFileError, match=r"m.pt: expected a Keras model file .*\.onnx"):
        saved.open_saved(tmp_path / "m.pt")
    (tmp_path / "m.tflite").write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        saved.open_saved(tmp_path / "m.tflite")


def test_corrupt_exports_say_so(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelFileError, match="m.onnx: not a readable ONNX model"):
        saved.open_saved(tmp_path / "m.onnx")
    (tmp_path / "m.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="m.tflite: not a readable LiteRT model"):
        saved.open_saved(tmp_path / "m.tflite")  # as it is opened, as an .onnx is


def test_an_export_has_no_keras_model(tiny_trained):
    lite = saved.open_saved(Path(tiny_trained[0]).with_suffix(".tflite"))
    assert lite.format == "litert" and not lite.is_keras
    with pytest.raises(
        ModelFileError,
        match=r"feature maps needs a Keras model \(.h5 or .keras\)"
        r"; this is a LiteRT \(.tflite\) export",
    ):
        lite.keras_model("feature maps")


def test_litert_metadata_reads_the_flatbuffer(tiny_trained, tmp_path):
    """`cnn train`'s .tflite carries the model's metadata; one without any reads as {}."""
    from cnn_mnist.stages.save import export_litert

    model_path, result = tiny_trained
    data = Path(model_path).with_suffix(".tflite").read_bytes()
    meta = saved.litert_metadata(data)
    assert meta["run_id"] == result.run_id and meta["input_shape"] == [28, 28, 1]
    assert json.dumps(meta["config"]) == json.dumps(saved.open_saved(model_path).metadata["config"])
    plain = export_litert(saved.open_saved(model_path).keras_model(), tmp_path / "plain.tflite")
    assert saved.litert_metadata(plain.read_bytes()) == {}
    lite, _ = saved.open_saved(plain).predictor()
    assert lite(np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 10)
