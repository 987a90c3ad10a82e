import json

import numpy as np
import pytest

from cnn_mnist.core.errors import CnnError
from cnn_mnist.stages.data import check_indices
from cnn_mnist.tools import predict


def test_parse_indices():
    assert predict.parse_indices(["10", "20", "30:33"]) == [10, 20, 30, 31, 32]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("x", "not a number"),
        ("1.5", "not a number"),
        ("20:10", "STOP > START"),
        ("3:", "not a number"),
    ],
)
def test_bad_index_syntax(spec, expected):
    with pytest.raises(CnnError, match=expected):
        predict.parse_indices([spec])


@pytest.mark.parametrize("index", [-1, 100, 1000])
def test_index_out_of_range_states_valid_range(index):
    with pytest.raises(CnnError, match="valid indices are 0 to 99"):
        check_indices([index], 100)


def _prediction(label=None):
    probabilities = np.full(10, 0.01)
    probabilities[3], probabilities[5], probabilities[8] = 0.8, 0.09, 0.04
    return predict.Prediction(
        digit=np.zeros((28, 28)),
        probabilities=probabilities / probabilities.sum(),
        index=7,
        label=label,
    )


def test_prediction_fields():
    p = _prediction(label=5)
    assert p.predicted == 3 and [d for d, _ in p.top3] == [3, 5, 8]
    data = p.to_dict()
    assert data["index"] == 7 and data["predicted"] == 3 and data["label"] == 5
    assert [t["digit"] for t in data["top3"]] == [3, 5, 8]
    json.dumps(data)
    assert "true label 5" in predict.describe(p) and "wrong" in predict.describe(p)


def test_render_is_28_rows_of_blocks():
    digit = np.zeros((28, 28))
    digit[10:20, 12:16] = 1.0
    lines = predict.render(digit).splitlines()
    assert len(lines) == 28 and {len(line) for line in lines} == {56}
    assert lines[10][24:32] == "█" * 8 and lines[0].strip() == ""


def test_probabilities_match_model_predict(tiny_mnist):
    from cnn_mnist.config.load import validate
    from cnn_mnist.stages.model import build_model
    from tests.conftest import TINY_LAYERS

    model = build_model(validate({"model": {"layers": TINY_LAYERS}}).model)
    digits = tiny_mnist.x_test[:50] / np.float32(255)
    ours = predict.probabilities(model, digits)
    np.testing.assert_allclose(
        ours, model.predict(digits[..., None], verbose=0), rtol=1e-5, atol=1e-6
    )
    raw = predict.probabilities(model, digits, normalize=False)
    np.testing.assert_allclose(
        raw,
        model.predict(tiny_mnist.x_test[:50, ..., None].astype("float32"), verbose=0),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.fixture
def trained_tiny(tiny_mnist):
    from cnn_mnist.config.load import validate
    from cnn_mnist.stages.data import prepare
    from cnn_mnist.stages.model import build_model, compile_model
    from tests.conftest import TINY_LAYERS

    config = validate({"model": {"layers": TINY_LAYERS}})
    data = prepare(tiny_mnist)
    model = compile_model(build_model(config.model), config.compile)
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
    return model, data


def test_litert_export_matches_keras(tmp_path, trained_tiny):
    from cnn_mnist.stages.handle import LiteRTModel
    from cnn_mnist.stages.save import export_litert

    model, data = trained_tiny
    lite = LiteRTModel(export_litert(model, tmp_path / "m.tflite"))
    x = data.x_test[:37]
    ours = predict.probabilities(lite, x[..., 0])
    keras_probs = predict.probabilities(model, x[..., 0])
    np.testing.assert_allclose(ours, keras_probs, atol=1e-5)
    assert (ours.argmax(1) == keras_probs.argmax(1)).all()
    assert predict.probabilities(lite, x[:1, ..., 0]).shape == (1, 10)  # resized back to 1


def test_open_model_uses_litert_only_when_it_matches(tmp_path, trained_tiny):
    from cnn_mnist.core import files
    from cnn_mnist.stages.card import ModelCard
    from cnn_mnist.stages.save import export_litert, save_model

    model, _ = trained_tiny
    lite = export_litert(model, tmp_path / "m.tflite")
    save_model(model, tmp_path / "m.h5", ModelCard(litert_sha256=files.sha256(lite)))
    assert predict.open_model(tmp_path / "m.h5")[1] == "litert"
    lite.write_bytes(lite.read_bytes() + b"\0")  # a different export: not this model's
    assert predict.open_model(tmp_path / "m.h5")[1] == "keras"
    save_model(model, tmp_path / "plain.h5")
    assert predict.open_model(tmp_path / "plain.h5")[1] == "keras"


def test_prediction_named_by_class_names():
    from tests.conftest import FASHION_NAMES

    p = _prediction(label=5)
    p.class_names = FASHION_NAMES
    line = predict.describe(p)
    assert line.startswith("index 7: predicted Dress (") and "then Sandal" in line
    assert "true label Sandal  <- wrong" in line
    data = p.to_dict()
    assert data["class_name"] == "Dress" and data["label_class_name"] == "Sandal"
    assert [t["class_name"] for t in data["top3"]] == ["Dress", "Sandal", "Bag"]
    assert predict.tile(p).title == "#7: predicted Dress (80%)\ntrue label Sandal"


def test_mnist_prediction_names_are_its_digits():
    p = _prediction(label=3)
    assert p.to_dict()["class_name"] == "3" and "predicted 3 (" in predict.describe(p)
