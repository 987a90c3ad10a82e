"""Step 7: save the model atomically, its card inside.

The model's card (card.py: its run, resolved config, dataset and class names) travels inside the
model file (an HDF5 attribute in `.h5`, a `cnn_mnist.json` entry in the `.keras` zip), so
`cnn predict` and `cnn evaluate` prepare inputs the way the model was trained (for example raw
0-255 pixels when `data.normalize` was false), and name its classes as its dataset does. Plain
`keras.models.load_model` ignores it. This module writes; the model's handle (handle.py) is the
one reader of a model file, the card included.
"""

from __future__ import annotations

from pathlib import Path

from cnn_mnist.core import files
from cnn_mnist.stages.card import METADATA_KEY, ModelCard

EXPECTED_INPUT = (28, 28, 1)


def float32_copy(model):
    """The model with float32 layers, for saving: one trained in mixed precision (on a GPU)
    must not make `cnn predict` compute in float16 on a CPU. Weights are float32 either way."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if optimizer is not None:
        copy.compile(
            optimizer=optimizer.__class__.from_config(optimizer.get_config()),
            loss=model.loss,
            metrics=["accuracy"],
        )
    return copy


def save_model(model, path: str | Path, card: ModelCard | None = None) -> Path:
    """Save as .h5 or .keras (by suffix), with `card` inside. A failed save leaves any earlier
    file untouched."""
    path = Path(path)
    model = float32_copy(model)
    with files.atomic_path(path) as tmp:
        files.check_room(tmp.parent, files.h5_bytes(model, optimizer=True), "the model")
        model.save(tmp)
        if card is not None:
            write_card(tmp, card)
    return path


def export_litert(model, path: str | Path) -> Path:
    """The model as a float32 LiteRT (.tflite) file, for fast predictions without TensorFlow
    (formats.convert, the one conversion `cnn export` and `cnn train` use)."""
    from cnn_mnist.stages.formats import convert

    return convert(float32_copy(model), "litert", "none", path)


def write_card(path: Path, card: ModelCard) -> None:
    """`card` into the .h5 or .keras just saved at `path`."""
    text = card.to_text()
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "a") as h5:
            h5.attrs[METADATA_KEY] = text
    else:
        import zipfile

        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(f"{METADATA_KEY}.json", text)
