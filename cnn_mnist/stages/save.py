"""Stage 6: save the model atomically, and load one with errors that say what is wrong.

The resolved config travels inside the model file (an HDF5 attribute in `.h5`, a `cnn_mnist.json`
entry in the `.keras` zip), so `cnn predict` and `cnn evaluate` prepare inputs the way the model
was trained (for example raw 0-255 pixels when `data.normalize` was false), and name its
classes as its dataset does (`dataset`, `class_names`). Plain `keras.models.load_model` ignores it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from cnn_mnist.core import files
from cnn_mnist.core.datasets import DIGITS
from cnn_mnist.core.errors import ModelFileError

EXPECTED_INPUT = (28, 28, 1)
METADATA_KEY = "cnn_mnist"  # as formats.METADATA_KEY: the exports carry the same object


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


def save_model(model, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save as .h5 or .keras (by suffix). A failed save leaves any earlier file untouched."""
    path = Path(path)
    model = float32_copy(model)
    with files.atomic_path(path) as tmp:
        model.save(tmp)
        if metadata is not None:
            _write_metadata(tmp, metadata)
    return path


def export_litert(model, path: str | Path) -> Path:
    """The model as a float32 LiteRT (.tflite) file, for fast predictions without TensorFlow
    (formats.convert, the one conversion `cnn export` and `cnn train` use)."""
    from cnn_mnist.stages.formats import convert

    return convert(float32_copy(model), "litert", "none", path)


def _write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata)
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "a") as h5:
            h5.attrs[METADATA_KEY] = text
    else:
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(f"{METADATA_KEY}.json", text)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What `save_model` stored with the model; {} for a model saved by other means."""
    path = Path(path)
    try:
        if path.suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as h5:
                text = h5.attrs.get(METADATA_KEY)
        else:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                text = (
                    archive.read(f"{METADATA_KEY}.json")
                    if f"{METADATA_KEY}.json" in names
                    else None
                )
        return json.loads(text) if text else {}
    except Exception:  # noqa: BLE001 - unreadable here means load_model will say what is wrong
        return {}


def normalize_of(metadata: dict[str, Any]) -> bool:
    """How the model was trained to see pixels: [0, 1], unless its config says raw 0-255."""
    return metadata.get("config", {}).get("data", {}).get("normalize", True)


def dataset_of(metadata: dict[str, Any]) -> str:
    """The dataset the model was trained on: mnist, fashion_mnist or custom ("mnist" for a
    model saved before datasets were recorded, or by other means)."""
    return metadata.get("dataset") or metadata.get("config", {}).get("data", {}).get(
        "dataset", "mnist"
    )


def class_names_of(metadata: dict[str, Any]) -> list[str]:
    """The model's ten class names, label 0 to 9 (the digits for a model without them)."""
    names = metadata.get("class_names")
    if isinstance(names, list) and len(names) == 10:
        return [str(n) for n in names]
    return list(DIGITS)


def model_normalize(path: str | Path) -> bool:
    """How the model at `path` was trained to see pixels (see normalize_of)."""
    return normalize_of(read_metadata(path))


def dataset(path: str | Path) -> str:
    """The dataset the model at `path` was trained on (see dataset_of)."""
    return dataset_of(read_metadata(path))


def class_names(path: str | Path) -> list[str]:
    """The ten class names of the model at `path` (see class_names_of)."""
    return class_names_of(read_metadata(path))


def check_model_path(path: str | Path) -> Path:
    """Cheap checks before TensorFlow is imported: the file exists and has a model suffix."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file not found: {path}; train one with `cnn train` or pass --model PATH"
        )
    if path.is_dir() or path.suffix not in (".h5", ".keras"):
        raise ModelFileError(f"{path}: expected a Keras model file ending in .h5 or .keras")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty; train again with `cnn train`")
    return path


def load_model(path: str | Path):
    """Load a saved digit classifier; ModelFileError if it is missing, broken or the wrong shape."""
    import keras

    path = check_model_path(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - h5py/zipfile/keras raise many types for a broken file
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path}: not a readable Keras model ({reason}); the file is "
            "truncated or corrupt: train again with `cnn train`"
        ) from None
    try:
        shape_in, shape_out = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    except (AttributeError, ValueError):
        shape_in = shape_out = None
    if shape_in != EXPECTED_INPUT:
        raise ModelFileError(
            f"{path}: the model takes inputs of shape {shape_in}, expected "
            f"{EXPECTED_INPUT} (one 28x28 grayscale digit)"
        )
    if shape_out != (10,):
        raise ModelFileError(
            f"{path}: the model has outputs of shape {shape_out}, expected (10,) "
            "(one probability per class)"
        )
    return model
