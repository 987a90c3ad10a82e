import keras
import pytest

from cnn_mnist.config import load_config, validate
from cnn_mnist.model import build_model, compile_model


def test_lecture_model_has_1199882_params():
    model = build_model(load_config().model)
    assert model.count_params() == 1_199_882
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[0].activation.__name__ == "relu"
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.layers[3].rate == 0.25


def test_layer_arguments_reach_keras():
    config = validate({"model": {"layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": [5, 3], "strides": 2, "padding": "same"},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})
    conv = build_model(config.model).layers[0]
    assert conv.kernel_size == (5, 3) and conv.strides == (2, 2) and conv.padding == "same"


def test_compile_uses_config():
    config = load_config(sets=["compile.optimizer=sgd", "compile.learning_rate=0.05"])
    model = compile_model(build_model(config.model), config.compile)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.05)
