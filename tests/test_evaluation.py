"""`cnn evaluate`'s library: a saved model evaluated as its dataset, its results written."""

import json

import pytest

from cnn_mnist.core.errors import WrongDataset
from cnn_mnist.stages import data
from cnn_mnist.tools import evaluation
from tests.conftest import FASHION_NAMES, known_table, relabelled_model


def test_evaluate_model_names_classes_from_the_model_file(tiny_trained, idx_folder, tmp_path):
    model = relabelled_model(tiny_trained[0], tmp_path / "fashion.h5")
    report = evaluation.evaluate_model(model, str(idx_folder), tmp_path / "ev")
    assert report.evaluation.class_names == FASHION_NAMES
    saved = json.loads(report.paths["confusion_matrix_json"].read_text())
    assert saved["class_names"] == FASHION_NAMES


def test_evaluate_refuses_test_data_of_another_dataset(
    tiny_trained, idx_folder, tiny_mnist, tmp_path, monkeypatch
):
    model = relabelled_model(tiny_trained[0], tmp_path / "fashion.h5")
    with pytest.raises(WrongDataset, match=r"fashion.h5 was trained on Fashion-MNIST, not MNIST"):
        evaluation.evaluate_model(model, str(idx_folder), tmp_path / "ev", dataset="mnist")
    # The files found by checksum to be MNIST's (the test's own table stands for the real one).
    monkeypatch.setattr(data, "KNOWN", {"mnist": known_table(tiny_mnist)})
    with pytest.raises(
        WrongDataset,
        match=r"fashion.h5 was trained on Fashion-MNIST, but "
        r".*t10k-images-idx3-ubyte.gz is MNIST \(found by "
        "checksum\\)",
    ):
        evaluation.evaluate_model(model, str(idx_folder), tmp_path / "ev")
    assert not (tmp_path / "ev").exists()  # refused before anything was written
