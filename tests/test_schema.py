"""The typed schema (cnn_mnist/config/schema.py): the lecture's defaults, strict and frozen sections."""

from __future__ import annotations

import pydantic
import pytest

from cnn_mnist.core import paths
from cnn_mnist.config.schema import Config, Conv2D, LAYER_NAMES


def test_defaults_are_the_lecture_model():
    config = Config()
    assert [layer.type for layer in config.model.layers] == [
        "Conv2D",
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert config.model.layers[0] == Conv2D(
        type="Conv2D", filters=32, kernel_size=3, activation="relu"
    )
    assert (config.training.epochs, config.training.batch_size) == (1, 128)
    assert config.compile.optimizer == "adam" and config.compile.learning_rate == 0.001
    assert config.output.model_path == paths.MODEL_PATH
    assert config.tensorboard.log_dir == paths.LOG_DIR


def test_sections_are_strict_and_frozen():
    with pytest.raises(pydantic.ValidationError):
        Config.model_validate({"training": {"epochs": "2"}})  # a string is not an int
    with pytest.raises(pydantic.ValidationError):
        Config.model_validate({"training": {"epoch": 2}})  # misspelt
    with pytest.raises(pydantic.ValidationError):
        Config().training.epochs = 3


def test_with_values_replaces_nested_keys_and_keeps_the_rest():
    config = Config()
    changed = config.with_values(
        {"training.seed": 7, "training.checkpoint": None, "tensorboard.enabled": False}
    )
    assert changed.training.seed == 7 and not changed.tensorboard.enabled
    assert changed.training.epochs == config.training.epochs
    assert config.training.seed is None and config.tensorboard.enabled  # the original stays


def test_every_layer_type_has_a_shape_rule():
    from cnn_mnist.config.shapes import RULES

    assert set(RULES) == set(LAYER_NAMES)


def test_dataset_and_class_names():
    from cnn_mnist.config.schema import DataConfig

    assert DataConfig().dataset == "mnist" and DataConfig().names == [str(d) for d in range(10)]
    fashion = DataConfig(dataset="fashion_mnist")
    assert fashion.names[0] == "T-shirt/top" and fashion.names[9] == "Ankle boot"
    assert DataConfig(dataset="custom").names == [str(d) for d in range(10)]
    names = [f"kana {k}" for k in range(10)]
    assert DataConfig(dataset="custom", class_names=names).names == names
    with pytest.raises(pydantic.ValidationError, match="expected 10 different names"):
        DataConfig(dataset="custom", class_names=names[:9])
    with pytest.raises(pydantic.ValidationError, match="expected 10 different names"):
        DataConfig(dataset="custom", class_names=["a"] * 10)
    with pytest.raises(pydantic.ValidationError, match="names of fashion_mnist are fixed"):
        DataConfig(dataset="fashion_mnist", class_names=names)
    with pytest.raises(pydantic.ValidationError):
        DataConfig(dataset="kmnist")
