"""The model card: typed, every field optional, unknown fields kept, stored as it always was."""

from __future__ import annotations

import json

import pytest

from cnn_mnist.stages.card import ExportInfo, ModelCard

# A model file's card as `cnn train` has always written it (an .h5 of version 1.x).
STORED = {
    "run_id": "20240101-000000-abcd",
    "config": {"data": {"dataset": "mnist", "normalize": True}, "training": {"epochs": 3}},
    "dataset": "mnist",
    "class_names": [str(d) for d in range(10)],
    "litert_sha256": "0" * 64,
}


def test_a_stored_card_reads_and_writes_back_the_same_text():
    text = json.dumps(STORED)
    card = ModelCard.from_text(text)
    assert card.run_id == STORED["run_id"] and card.dataset == "mnist"
    assert card.config == STORED["config"] and card.litert_sha256 == "0" * 64
    assert card.input_shape is None and card.export is None
    assert card.to_text() == text  # byte for byte: no defaults added, same order


def test_the_fields_are_written_in_their_order_unknown_ones_after():
    card = ModelCard(class_names=["a"] * 10, run_id="r")
    card.litert_sha256 = "ab"
    card = card.model_copy(update={"epoch": 2, "val_accuracy": 0.9})  # a best.h5's
    assert list(card.to_json()) == [
        "run_id",
        "class_names",
        "litert_sha256",
        "epoch",
        "val_accuracy",
    ]


def test_an_exports_card():
    card = ModelCard.read(
        {
            **STORED,
            "input_shape": [28, 28, 1],
            "export": {"format": "onnx", "quantize": "int8", "opset": 17},
        }
    )
    assert card.input_shape == [28, 28, 1]
    assert card.export == ExportInfo(format="onnx", quantize="int8", opset=17)
    assert card.to_json()["export"] == {"format": "onnx", "quantize": "int8", "opset": 17}


@pytest.mark.parametrize("text", [None, "", b"", "not json", "[1, 2]", "null", "3"])
def test_no_card_is_an_empty_one(text):
    assert ModelCard.from_text(text).to_json() == {}


def test_a_field_of_another_type_reads_as_missing():
    card = ModelCard.read({"run_id": 3, "class_names": "0123456789", "dataset": "custom", "x": [1]})
    assert card.to_json() == {"dataset": "custom", "x": [1]}
    assert card.run_id is None and card.class_names is None


def test_null_fields_stay_as_stored():
    assert ModelCard.read({"run_id": None}).to_text() == '{"run_id": null}'
