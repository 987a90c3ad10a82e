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


@pytest.mark.parametrize("kind", ["one_cycle", "cosine"])
def test_schedules(kind):
    from cnn_mnist.model import learning_rate

    config = load_config(sets=["compile.learning_rate=0.01",
                               f"compile.schedule={{type: {kind}, warmup: 0.2}}"]).compile
    schedule = learning_rate(config, total_steps=100)
    at = lambda step: float(schedule(step))
    if kind == "one_cycle":
        assert at(0) == pytest.approx(0.01 * 0.04)
        assert at(20) == pytest.approx(0.01, rel=1e-4)  # the peak, after 20% of the steps
        assert at(10) == pytest.approx((0.01 * 0.04 + 0.01) / 2, rel=1e-3)
    else:
        assert at(0) == pytest.approx(0.01)
    assert at(100) == pytest.approx(0.0, abs=1e-7)
    assert at(60) < at(40)


def test_model_with_schedule_loads_with_plain_keras(tmp_path):
    from cnn_mnist.save import save_model

    config = load_config("speedrun")
    model = compile_model(build_model(config.model), config.compile, total_steps=50)
    path = save_model(model, tmp_path / "s.h5")
    loaded = keras.models.load_model(path)  # compiled: the schedule is Keras's own
    assert isinstance(loaded.optimizer.learning_rate, keras.optimizers.schedules.CosineDecay) or \
        loaded.optimizer is not None


def test_speedrun_config_is_valid_and_fits_exactly(caplog):
    config = load_config("speedrun")
    assert config.training.batch_size == 128 and config.compile.schedule.type == "one_cycle"
    assert "does not fit" not in caplog.text
    assert build_model(config.model).count_params() == 317_066
