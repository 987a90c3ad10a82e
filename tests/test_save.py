import keras
import numpy as np
import pytest

from cnn_mnist.config.load import validate
from cnn_mnist.core.errors import ModelFileError
from cnn_mnist.stages.model import build_model, compile_model
from cnn_mnist.stages.save import load_model, save_model
from tests.conftest import TINY_LAYERS


@pytest.fixture
def tiny_model():
    config = validate({"model": {"layers": TINY_LAYERS}})
    return compile_model(build_model(config.model), config.compile)


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_save_and_load_with_plain_keras(tmp_path, tiny_model, name):
    path = save_model(tiny_model, tmp_path / "sub" / name)
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(
        keras.models.load_model(path).predict(x, verbose=0),
        tiny_model.predict(x, verbose=0),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        load_model(path).predict(x, verbose=0), tiny_model.predict(x, verbose=0), rtol=1e-6
    )
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary files left


def test_failed_save_keeps_the_old_model(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.h5")
    before = path.read_bytes()

    class Unserializable(keras.layers.Layer):  # no get_config for its constructor argument
        def __init__(self, thing):
            super().__init__()
            self.thing = thing

        def call(self, x):
            return x

    broken = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            Unserializable(object()),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    with pytest.raises(Exception):
        save_model(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found.*cnn train"):
        load_model(tmp_path / "none.h5")


def test_not_a_model(tmp_path):
    (tmp_path / "notes.h5").write_text("hello")
    with pytest.raises(ModelFileError, match="notes.h5: not a readable Keras model"):
        load_model(tmp_path / "notes.h5")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFileError, match="ending in .h5 or .keras"):
        load_model(tmp_path / "notes.txt")


def test_truncated_model(tmp_path, tiny_model):
    path = save_model(tiny_model, tmp_path / "m.h5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(path)


@pytest.mark.parametrize(
    "shape, units, expected",
    [
        ((32, 32, 3), 10, r"inputs of shape \(32, 32, 3\), expected \(28, 28, 1\)"),
        ((28, 28, 1), 3, r"outputs of shape \(3,\), expected \(10,\)"),
    ],
)
def test_not_a_digit_classifier(tmp_path, shape, units, expected):
    other = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(units)]
    )
    path = save_model(other, tmp_path / "other.h5")
    with pytest.raises(ModelFileError, match=expected):
        load_model(path)


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_metadata_travels_with_the_model(tmp_path, tiny_model, name):
    from cnn_mnist.stages.save import read_metadata

    path = save_model(tiny_model, tmp_path / name, {"config": {"data": {"normalize": False}}})
    assert read_metadata(path) == {"config": {"data": {"normalize": False}}}
    keras.models.load_model(path)  # still a plain Keras model
    plain = tmp_path / f"plain{path.suffix}"
    tiny_model.save(plain)
    assert read_metadata(plain) == {}


def test_empty_model_file(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        load_model(tmp_path / "empty.h5")


def test_class_names_and_dataset_of_a_model(tmp_path, tiny_model):
    from cnn_mnist.stages import save

    old = save_model(tiny_model, tmp_path / "old.h5")  # no metadata: an older model
    assert save.class_names(old) == [str(d) for d in range(10)]
    assert save.dataset(old) == "mnist"
    names = [f"kana {k}" for k in range(10)]
    new = save_model(
        tiny_model, tmp_path / "new.keras", {"dataset": "custom", "class_names": names}
    )
    assert save.class_names(new) == names and save.dataset(new) == "custom"
    # Only the config (a best.h5 from an earlier version): its dataset still counts.
    best = save_model(
        tiny_model, tmp_path / "best.h5", {"config": {"data": {"dataset": "fashion_mnist"}}}
    )
    assert save.dataset(best) == "fashion_mnist"


def test_class_names_are_the_digits_unless_stored(tmp_path, tiny_model):
    from cnn_mnist.stages.save import class_names

    plain = save_model(tiny_model, tmp_path / "plain.h5", {"run_id": "x"})
    assert class_names(plain) == [str(i) for i in range(10)]
    named = save_model(tiny_model, tmp_path / "named.h5", {"class_names": list("abcdefghij")})
    assert class_names(named) == list("abcdefghij")
