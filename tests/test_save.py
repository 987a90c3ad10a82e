import json

import keras
import numpy as np
import pytest

from cnn_mnist.stages.card import ModelCard
from cnn_mnist.stages.handle import card_of, open_saved
from cnn_mnist.stages.save import save_model, write_card


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
        open_saved(path).keras_model().predict(x, verbose=0),
        tiny_model.predict(x, verbose=0),
        rtol=1e-6,
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


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_the_card_travels_with_the_model(tmp_path, tiny_model, name):
    card = ModelCard(config={"data": {"normalize": False}})
    path = save_model(tiny_model, tmp_path / name, card)
    assert card_of(path).to_json() == {"config": {"data": {"normalize": False}}}
    assert open_saved(path).normalize is False
    keras.models.load_model(path)  # still a plain Keras model
    plain = tmp_path / f"plain{path.suffix}"
    tiny_model.save(plain)
    assert card_of(plain).to_json() == {}


def test_the_card_is_stored_as_it_always_was(tmp_path, tiny_model):
    """The JSON text in the file: the fields that were set, in the order they have always had
    (an older version reads it), unknown fields after them."""
    import h5py

    card = ModelCard(run_id="r", config={"a": 1}, dataset="mnist", class_names=list("0123456789"))
    card = card.model_copy(update={"litert_sha256": "ab", "epoch": 3, "val_accuracy": 0.5})
    path = save_model(tiny_model, tmp_path / "m.h5", card)
    with h5py.File(path, "r") as h5:
        text = h5.attrs["cnn_mnist"]
    assert text == json.dumps(
        {
            "run_id": "r",
            "config": {"a": 1},
            "dataset": "mnist",
            "class_names": list("0123456789"),
            "litert_sha256": "ab",
            "epoch": 3,
            "val_accuracy": 0.5,
        }
    )
    write_card(path, ModelCard(run_id="s"))  # replaced in an .h5
    assert card_of(path).to_json() == {"run_id": "s"}
