"""Models of others' making, in every format: refused with one line naming the file, what it has
and what is expected, unless it is a classifier of 28x28x1 digits giving probabilities. The
models are real Keras models, saved by Keras and exported by its own `model.export`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.stages import handle, signature
from tests.conftest import FOREIGN_FORMATS, foreign_model, save_every_way

# What each kind of foreign model (conftest.FOREIGN_KINDS) is refused with, in every format.
REFUSED = {
    "wrong_input": r"the model takes inputs of shape \(32, 32, 3\), expected \(28, 28, 1\) "
    r"\(one 28x28 grayscale digit\)$",
    "five_outputs": r"the model has outputs of shape \(5,\), expected \(10,\) "
    r"\(one probability per class",
    "linear": r"the model's outputs are not probabilities \(they sum to -?\d[\d.e+-]*, not 1\): "
    r"expected a softmax output layer$",
}


@pytest.mark.parametrize("fmt", FOREIGN_FORMATS)
@pytest.mark.parametrize("kind", REFUSED)
def test_a_foreign_model_that_is_no_digit_classifier_is_refused(foreign_models, kind, fmt):
    path = foreign_models[kind][fmt]
    with pytest.raises(ModelFileError) as caught:
        handle.open_saved(path).predictor()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert re.search(REFUSED[kind], message), message


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_an_exports_input_is_checked_as_it_is_opened(foreign_models, fmt):
    """Before any data is read: ONNX Runtime and LiteRT say what the model takes."""
    with pytest.raises(ModelFileError, match=REFUSED["wrong_input"]):
        handle.open_saved(foreign_models["wrong_input"][fmt])


@pytest.mark.parametrize("kind", REFUSED)
def test_a_keras_model_is_checked_as_it_is_loaded(foreign_models, kind):
    """`cnn inspect` and the server's views take the Keras model, not a predictor."""
    with pytest.raises(ModelFileError, match=REFUSED[kind]):
        handle.open_saved(foreign_models[kind]["keras"]).keras_model()


def test_a_foreign_digit_classifier_runs_in_every_format(foreign_models):
    """Without metadata it is taken for an MNIST model, and each runtime answers as Keras."""
    x = np.random.default_rng(1).random((3, 28, 28, 1)).astype(np.float32)
    paths = foreign_models["digits"]
    expected = np.asarray(handle.open_saved(paths["keras"]).keras_model()(x))
    for fmt, path in paths.items():
        opened = handle.open_saved(path)
        predictor, _ = opened.predictor(fast=False)
        assert opened.dataset == "mnist" and len(opened.class_names) == 10
        np.testing.assert_allclose(np.asarray(predictor(x)), expected, atol=1e-5, err_msg=fmt)


def _for_a_batch_of_one(model, folder) -> dict[str, Path]:
    """`model` exported for a batch of exactly one, as exporters without dynamic axes do:
    LiteRT's converter on a function of one digit, and Keras's .onnx with its batch set to 1."""
    import onnx
    import tensorflow as tf

    paths = save_every_way(model, folder, "one", ["onnx"])
    proto = onnx.load(str(paths["onnx"]))
    for value in [*proto.graph.input, *proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(paths["onnx"]))
    one = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((1, 28, 28, 1))])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([one.get_concrete_function()])
    paths["litert"] = folder / "one.tflite"
    paths["litert"].write_bytes(converter.convert())
    return paths


def test_a_model_exported_for_a_batch_of_one_predicts_a_batch(tmp_path):
    """A batch dimension of exactly one is a digit at a time: a batch is fed one by one."""
    model = foreign_model((28, 28, 1), 10, "softmax")
    x = np.random.default_rng(2).random((3, 28, 28, 1)).astype(np.float32)
    expected = np.asarray(model(x))
    for fmt, path in _for_a_batch_of_one(model, tmp_path).items():
        predictor, _ = handle.open_saved(path).predictor()
        assert predictor.inputs == [((1, 28, 28, 1), "float32")], fmt
        np.testing.assert_allclose(predictor(x), expected, atol=1e-5, err_msg=fmt)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_a_truncated_export_is_refused_as_it_is_opened(foreign_models, tmp_path, fmt):
    data = foreign_models["digits"][fmt].read_bytes()
    cut = tmp_path / f"cut{FOREIGN_FORMATS[fmt]}"
    cut.write_bytes(data[: len(data) // 2])
    name = {"onnx": "ONNX", "litert": "LiteRT"}[fmt]
    with pytest.raises(ModelFileError, match=rf"cut{cut.suffix}: not a readable {name} model"):
        handle.open_saved(cut)


def test_a_broken_saved_model_is_refused(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"not a protobuf")
    opened = handle.open_saved(tmp_path / "sm")
    with pytest.raises(ModelFileError, match="sm: not a readable SavedModel "):
        opened.predictor()


# --- the checks themselves, on what a runtime declares and what a predictor gives -------------


def test_dims_leave_dynamic_dimensions_open():
    assert signature.dims(["unk__31", 28, None, -1, np.int32(1)]) == (None, 28, None, None, 1)
    assert signature.onnx_dtype("tensor(float)") == "float32"
    assert signature.onnx_dtype("tensor(int8)") == "int8"


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ([((None, 28, 28, 1), "float32")], None),
        ([((1, 28, 28, 1), "float32")], None),
        ([((None, None, None, 1), "float32")], None),  # it says it takes any size
        ([], r"takes 0 inputs, expected one"),
        ([((None, 28, 28, 1), "float32")] * 2, r"takes 2 inputs, expected one"),
        ([((None, 1, 28, 28), "float32")], r"inputs of shape \(1, 28, 28\), expected"),
        ([((None, 784), "float32")], r"inputs of shape \(784,\), expected \(28, 28, 1\)"),
        ([((8, 28, 28, 1), "float32")], r"batches of exactly 8 digits"),
        ([((None, 28, 28, 1), "int8")], r"takes int8 inputs, expected float32"),
    ],
)
def test_check_input(inputs, expected):
    if expected is None:
        signature.check_input("m.onnx", inputs)
        return
    with pytest.raises(ModelFileError, match=rf"^m.onnx: .*{expected}"):
        signature.check_input("m.onnx", inputs)


def _giving(row):
    return lambda x, training=False: np.tile(np.asarray(row, np.float32), (len(x), 1))


@pytest.mark.parametrize(
    "row, tolerance, expected",
    [
        ([0.1] * 10, signature.TOLERANCE, None),
        ([0.1] * 9 + [0.109], signature.TOLERANCE, r"they sum to 1.009, not 1"),
        ([0.1] * 9 + [0.109], signature.INT8_TOLERANCE, None),  # int8: each rounded to 1/256
        ([1.5, -0.5] + [0.0] * 8, signature.TOLERANCE, r"one is -0.5, not between 0 and 1"),
        ([np.nan] * 10, signature.TOLERANCE, r"they sum to nan, not 1"),
        ([0.2] * 5, signature.TOLERANCE, r"outputs of shape \(5,\), expected \(10,\)"),
    ],
)
def test_check_outputs(row, tolerance, expected):
    predictor = _giving(row)
    if expected is None:
        signature.check_outputs("m.tflite", predictor, 10, tolerance=tolerance)
        return
    with pytest.raises(ModelFileError, match=rf"^m.tflite: .*{expected}"):
        signature.check_outputs("m.tflite", predictor, 10, tolerance=tolerance)


def test_a_model_that_cannot_predict_a_digit_is_refused():
    def broken(x, training=False):
        raise RuntimeError("Invalid rank for input: expected 3, got 4\nmore detail")

    with pytest.raises(
        ModelFileError,
        match=r"^m.onnx: the model could not predict one 28x28 digit \(Invalid rank .* got 4\)$",
    ):
        signature.check_outputs("m.onnx", broken, 10)


def test_probes_are_fed_as_the_model_was_trained():
    assert signature.probes().max() <= 1 and signature.probes(normalize=False).max() > 200
    np.testing.assert_array_equal(signature.probes(), signature.probes())  # the same each time
