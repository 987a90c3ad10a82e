"""The conversions themselves: each format written atomically with the model's card in its
own place, int8 full-integer (convolutions included), a model int8 cannot hold refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnn_mnist.core.errors import ExportError
from cnn_mnist.stages import formats, handle
from cnn_mnist.stages.card import ModelCard

META = {
    "run_id": "r-1",
    "dataset": "custom",
    "class_names": list("abcdefghij"),
    "config": {"data": {"normalize": False}},
}
CARD = ModelCard.read(META)


@pytest.fixture(scope="module")
def tiny_keras(tiny_trained):
    return handle.open_saved(tiny_trained[0]).keras_model()


@pytest.mark.parametrize(
    "fmt, name", [("litert", "m.tflite"), ("onnx", "m.onnx"), ("saved_model", "sm")]
)
def test_the_card_lives_in_the_format(tiny_keras, tmp_path, fmt, name):
    path = formats.convert(tiny_keras, fmt, "none", tmp_path / name, CARD)
    opened = handle.open_saved(path)
    assert opened.format == fmt and opened.card.to_json() == META
    assert opened.class_names == list("abcdefghij") and opened.dataset == "custom"
    assert opened.normalize is False and opened.run_id == "r-1"
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(props["cnn_mnist"]) == META
    if fmt == "saved_model":
        assert json.loads((path / "assets" / "cnn_mnist.json").read_text()) == META
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left


def test_int8_litert_is_full_integer(tiny_keras, tiny_mnist, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    calibration = tiny_mnist.x_train[:50, ..., None].astype(np.float32) / 255
    path = formats.convert(
        tiny_keras, "litert", "int8", tmp_path / "q.tflite", calibration=calibration
    )
    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = {op["op_name"]: op for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    assert all(dtypes[i] == np.int8 for i in ops["CONV_2D"]["inputs"][:2])  # input, kernel
    assert formats.float_ops(path, "litert") == []


def test_int8_onnx_quantizes_the_convolution(tiny_keras, tiny_mnist, tmp_path):
    import onnx

    calibration = tiny_mnist.x_train[:50, ..., None].astype(np.float32) / 255
    path = formats.convert(tiny_keras, "onnx", "int8", tmp_path / "q.onnx", calibration=calibration)
    graph = onnx.load(str(path)).graph
    kinds = [n.op_type for n in graph.node]
    assert "Conv" in kinds and "QuantizeLinear" in kinds and "DequantizeLinear" in kinds
    assert formats.float_ops(path, "onnx") == []


def test_a_model_int8_cannot_hold_is_refused(tmp_path):
    import keras

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Lambda(keras.ops.sin)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    (tmp_path / "q.tflite").write_bytes(b"an earlier export")
    calibration = np.random.default_rng(0).random((20, 28, 28, 1), np.float32)
    with pytest.raises(
        ExportError,
        match="could not quantize every layer of this model to int8: "
        "SIN would still compute in float",
    ):
        formats.convert(model, "litert", "int8", tmp_path / "q.tflite", calibration=calibration)
    assert (tmp_path / "q.tflite").read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["q.tflite"]


def test_a_failed_saved_model_keeps_the_earlier_one(tiny_keras, tmp_path):
    first = formats.convert(tiny_keras, "saved_model", "none", tmp_path / "sm", CARD)
    before = sorted(p.relative_to(first) for p in first.rglob("*"))
    with pytest.raises(RuntimeError):
        with formats.atomic_export(first, "saved_model") as tmp:
            formats.write_export(tiny_keras, "saved_model", "none", tmp, CARD)
            raise RuntimeError("the check failed")
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["sm"]
