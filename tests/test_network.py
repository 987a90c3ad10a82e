"""What a network computes, pictured (cnn_mnist/analysis/network.py): the one arithmetic of output
sizes (shapes.py's) against Keras's own shapes, and the tiles training's TensorBoard shows.

Real TensorFlow on a tiny model with seeded random weights; `cnn inspect`'s own tests
(tests/test_inspection.py) cover the pictures and one value by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_mnist.analysis import network
from cnn_mnist.config import shapes

LAYERS = [
    {"type": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"},
    {"type": "MaxPooling2D", "pool_size": 3, "strides": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


@pytest.fixture(scope="module")
def model():
    from cnn_mnist.config.schema import ModelConfig
    from cnn_mnist.stages.model import build_model

    return build_model(ModelConfig.model_validate({"layers": LAYERS}))


def test_the_arithmetic_is_shapes_and_gives_keras_output_size(model):
    conv, pool = model.layers[0], model.layers[1]
    assert network.arithmetic(conv, (28, 28, 1)) == shapes.axis_arithmetic(28, 3, 2, "same")
    assert network.arithmetic(conv, (28, 28, 1)).startswith("ceil(28 / 2) = 14")
    assert network.arithmetic(pool, (14, 14, 3)) == "(14 - 3 + 2*0) / 2 + 1 = 6.5, rounded down: 6"
    assert tuple(conv.output.shape[1:3]) == (shapes.output_size(28, 3, 2, "same"),) * 2
    assert tuple(pool.output.shape[1:3]) == (shapes.output_size(14, 3, 2, "valid"),) * 2


def test_tensorboard_images_are_one_tiled_grid_per_convolution(model):
    x = network.model_input(np.zeros((28, 28), np.float32))
    images = network.tensorboard_images(model, x)
    assert sorted(images) == ["feature_maps/layer_0_conv2d", "kernels/layer_0"]
    tiled = network.tile(network.activations(model, x)[0][0])  # 7x7 maps of 3 channels
    scale = network.tb_scale(tiled)
    assert scale > 1 and max(tiled.shape) * scale <= network.TB_MIN_SIDE  # scaled up whole
    assert images["feature_maps/layer_0_conv2d"].shape == (
        tiled.shape[0] * scale,
        tiled.shape[1] * scale,
        3,
    )
    assert all(image.dtype == np.uint8 for image in images.values())
