"""Stage 6: save the model atomically, and load one with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

from cnn_mnist import files
from cnn_mnist.errors import ModelFileError

EXPECTED_INPUT = (28, 28, 1)


def save_model(model, path: str | Path) -> Path:
    """Save as .h5 or .keras (by suffix). A failed save leaves any earlier file untouched."""
    path = Path(path)
    with files.atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_model(path: str | Path):
    """Load a saved digit classifier; ModelFileError if it is missing, broken or the wrong shape."""
    import keras

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}; train one with `cnn train` "
                             "or pass --model PATH")
    if path.is_dir() or path.suffix not in (".h5", ".keras"):
        raise ModelFileError(f"{path}: expected a Keras model file ending in .h5 or .keras")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py/zipfile/keras raise many types for a broken file
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable Keras model ({reason}); the file is "
                             "truncated or corrupt: train again with `cnn train`") from None
    shape = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else None
    if shape != EXPECTED_INPUT:
        raise ModelFileError(f"{path}: the model takes inputs of shape {shape}, expected "
                             f"{EXPECTED_INPUT} (one 28x28 grayscale digit)")
    return model
