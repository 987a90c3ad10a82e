"""The typed schema (cnn_mnist/config/schema.py): the lecture's defaults, strict and frozen sections."""

from __future__ import annotations

import re

import pydantic
import pytest

from cnn_mnist.config.schema import LAYER_NAMES, Config, Conv2D
from cnn_mnist.core import paths
from cnn_mnist.core.datasets import DIGITS


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

    assert DataConfig().dataset == "mnist" and DataConfig().names == DIGITS
    fashion = DataConfig(dataset="fashion_mnist")
    assert fashion.names[0] == "T-shirt/top" and fashion.names[9] == "Ankle boot"
    assert DataConfig(dataset="custom").names == DIGITS
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


def _integers(node, path="$"):
    """(path, schema) of every integer in a JSON Schema."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield path, node
        for key, value in node.items():
            yield from _integers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _integers(value, f"{path}[{i}]")


def test_every_integer_has_an_upper_bound():
    # Before: batch_size 10**23 passed, and ended in a TensorFlow ValueError traceback.
    from cnn_mnist.config.load import json_schema

    found = list(_integers(json_schema()))
    assert len(found) > 20
    unbounded = [path for path, node in found if "maximum" not in node]
    assert not unbounded, unbounded
    assert all(node["maximum"] <= 2**63 - 1 for _, node in found)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("training.batch_size", "100000000000000000000000", "less than or equal to 1048576"),
        ("training.epochs", "10000000", "less than or equal to 1000000"),
        ("training.seed", str(2**32), "less than or equal to 4294967295"),
        ("model.layers[0].filters", str(2**31), "less than or equal to 2147483647"),
        ("model.layers[5].units", str(2**40), "less than or equal to 2147483647"),
        ("model.layers[0].kernel_size", "[3, 5000]", "sizes of at most 4096"),
        ("model.layers[2].strides", str(2**64), "sizes of at most 4096"),
        ("model.input_shape", "[28, 28, 100000]", "model.input_shape[2]"),
        ("data.limit_train", str(2**31), "less than or equal to 2147483647"),
        ("compile.steps_per_execution", str(2**31), "or less than or equal to 2147483647"),
        ("tensorboard.profile_batch", f"[1, {2**40}]", "1 <= first <= last <= 2147483647"),
        ("training.collective_timeout", "1e300", "less than or equal to 604800"),
    ],
)
def test_a_number_too_large_to_mean_anything_is_refused(key, value, expected):
    from cnn_mnist.config.load import load_config
    from cnn_mnist.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(sets=[f"{key}={value}"])
    message = str(info.value)
    assert message.startswith(f"invalid config default.yaml: {key}") and expected in message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize(
    "key",
    [
        "compile.learning_rate",
        "compile.beta_1",
        "compile.label_smoothing",
        "model.layers[3].rate",
        "data.augment.rotation",
        "training.collective_timeout",
        "training.early_stopping.min_delta",
        "compile.schedule.warmup",
    ],
)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e999"])
def test_nan_and_infinity_are_refused(key, value):
    # Before: `learning_rate: .inf` passed, as did an infinite collective_timeout.
    from cnn_mnist.config.load import load_config
    from cnn_mnist.core.errors import ConfigError

    sets = ["compile.schedule.type=cosine"] if key.startswith("compile.schedule") else []
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: Input should be a finite number"):
        load_config(sets=[*sets, f"{key}={value}"])


def test_the_largest_values_still_pass():
    from cnn_mnist.config.load import load_config

    config = load_config(sets=[f"training.seed={2**32 - 1}", f"training.batch_size={2**20}"])
    assert (config.training.seed, config.training.batch_size) == (2**32 - 1, 2**20)
    sweep = "{parameters: {training.seed: {values: [0, 4294967295]}}}"
    assert load_config(sets=[f"sweep={sweep}"]).sweep.parameters["training.seed"].values[1] == (
        2**32 - 1
    )
